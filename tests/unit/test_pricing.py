"""The price book: genai-prices as the source, the operator's file on top, exact to the
nano-dollar, effective-dated, every alias spelling resolved, never a silent $0."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenledger.contract.price_book import CallContext, PriceBook, load_price_book
from tokenledger.contract.price_file import Overrides, PriceFile, PriceFileError
from tokenledger.contract.price_source import PriceSource, genai_usage
from tokenledger.contract.pricing import Rates, TokenCounts

AT = datetime(2026, 1, 15, tzinfo=UTC)
LATER = datetime(2026, 11, 1, tzinfo=UTC)  # after the source's 2026-10-14 variants
CALL = TokenCounts(input=3500, output=420, cached_input=1024, reasoning=128)
BOOK = load_price_book()


def book(doc: dict[str, Any]) -> PriceBook:
    return PriceBook(Overrides(PriceFile.model_validate(doc)))


def library_usage(tokens: TokenCounts) -> genai_prices.Usage:
    """The same call as the library's usage (inputs as totals, parts beside them)."""
    return genai_usage(
        {
            "input_tokens": tokens.input,
            "cache_read_tokens": tokens.cached_input,
            "cache_write_tokens": tokens.cache_write,
            "cache_write_1h_tokens": tokens.cache_write_1h,
            "output_tokens": tokens.output,
            "output_reasoning_tokens": tokens.reasoning,
        }
    )


def library_nusd(
    tokens: TokenCounts,
    model: str,
    provider: str,
    at: datetime,
    context: dict[str, str] | None = None,
) -> int:
    """genai_prices.calc_price for the same call, rounded once half to even."""
    usage = library_usage(tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = genai_prices.calc_price(
            usage, model, provider_id=provider, genai_request_timestamp=at, price_context=context
        )
    return int((calc.total_price * 10**9).to_integral_value(ROUND_HALF_EVEN))


def test_gpt_4o_call_costs_exactly_its_token_classes() -> None:
    # uncached 2476 x $2.50 + cached 1024 x $1.25 + visible out 292 x $10 + reasoning 128 x $10
    # = $11,670 per 1M tokens = 11,670,000 nano-USD
    priced = BOOK.price("openai", "gpt-4o", AT, CALL)
    assert priced is not None
    assert priced.cost_nusd == 11_670_000
    assert priced.pricing_version == f"{BOOK.source.version}:openai/gpt-4o"


def test_every_model_of_the_source_agrees_with_calc_price() -> None:
    """Each model, each price period and request variant, calls below and above any tier."""
    calls = [
        CALL,
        TokenCounts(input=1, output=0),
        TokenCounts(input=0, output=0),
        TokenCounts(
            input=250_001,
            output=9_000,
            cached_input=100_000,
            cache_write=50_000,
            cache_write_1h=20_000,
            reasoning=77,
        ),
    ]
    source = PriceSource()
    checked = 0
    for model in source.every_model():
        dates = [datetime(2024, 1, 1, tzinfo=UTC)] + [s + timedelta(hours=5) for s in model.starts]
        contexts = [()] + [tuple(sorted(v.when.items())) for v in model.info.price_variants or ()]
        for at in dates:
            for context in contexts:
                rates, _ = model.rates(at, context)
                for tokens in calls:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        calc = model.info.calc_price(
                            library_usage(tokens),
                            model.provider,
                            genai_request_timestamp=at,
                            price_context=dict(context) or None,
                        )
                    want = int((calc.total_price * 10**9).to_integral_value(ROUND_HALF_EVEN))
                    assert rates.cost_nusd(tokens) == want, (model.info.id, at, context, tokens)
                    checked += 1
    assert len(source.every_model()) == sum(len(p.models) for p in source.snapshot.providers)
    assert checked > 4 * len(source.every_model())


def test_a_call_before_a_price_change_pays_the_old_price() -> None:
    # OpenAI cut o3 from $10 to $2 per 1M input tokens on 2025-06-10
    tokens = TokenCounts(input=1_000_000, output=0)
    before = BOOK.price("openai", "o3", datetime(2025, 6, 9, 23, 59, tzinfo=UTC), tokens)
    at_cut = BOOK.price("openai", "o3", datetime(2025, 6, 10, tzinfo=UTC), tokens)
    assert before is not None and before.cost_nusd == 10_000_000_000
    assert at_cut is not None and at_cut.cost_nusd == 2_000_000_000
    assert at_cut.pricing_version.endswith("openai/o3@2025-06-10")


def test_long_prompts_pay_the_tier_rate_for_the_whole_call() -> None:
    # gemini-2.5-pro: $1.25 / $10 up to 200k prompt tokens, $2.50 / $15 above, for all tokens
    small, large = (
        TokenCounts(input=200_000, output=1_000),
        TokenCounts(input=250_000, output=1_000),
    )
    assert BOOK.price("google", "gemini-2.5-pro", LATER, small).cost_nusd == (  # type: ignore[union-attr]
        200_000 * 1250 + 1_000 * 10_000
    )
    assert BOOK.price("google", "gemini-2.5-pro", LATER, large).cost_nusd == (  # type: ignore[union-attr]
        250_000 * 2500 + 1_000 * 15_000
    )


def test_anthropic_one_hour_cache_writes_cost_twice_the_input_rate() -> None:
    # 10,000 prompt tokens: 2,000 written for 5 minutes ($3.75), 4,000 for 1 hour ($6),
    # 2,000 read ($0.30), 2,000 plain ($3)
    tokens = TokenCounts(
        input=10_000, output=500, cached_input=2_000, cache_write=6_000, cache_write_1h=4_000
    )
    priced = BOOK.price("anthropic", "claude-sonnet-4-5", LATER, tokens)
    assert priced is not None
    assert priced.cost_nusd == (
        2_000 * 3000 + 2_000 * 300 + 2_000 * 3750 + 4_000 * 6000 + 500 * 15_000
    )


def test_batch_and_service_tiers_price_as_the_provider_defines_them() -> None:
    tokens = TokenCounts(input=3500, output=420, cached_input=1024)
    batch = BOOK.price("openai", "gpt-4o", LATER, tokens, CallContext(batch=True))
    priority = BOOK.price("openai", "gpt-4o", LATER, tokens, CallContext(service_tier="priority"))
    # OpenAI's batch halves input and output; cached reads keep their rate
    assert batch is not None and batch.cost_nusd == 2476 * 1250 + 1024 * 1250 + 420 * 5000
    assert priority is not None and priority.cost_nusd == 2476 * 4250 + 1024 * 2125 + 420 * 17000
    assert batch.cost_nusd == library_nusd(
        tokens, "gpt-4o", "openai", LATER, {"processing": "batch"}
    )
    standard = BOOK.price("openai", "gpt-4o", LATER, tokens, CallContext(service_tier="default"))
    assert standard is not None and standard.cost_nusd == 2476 * 2500 + 1024 * 1250 + 420 * 10000


@pytest.mark.parametrize(
    ("provider", "name", "priced_as"),
    [
        ("openai", "openai/gpt-4o", "openai/gpt-4o"),
        ("openai", "GPT-4o", "openai/gpt-4o"),
        ("", "openai/gpt-4o", "openai/gpt-4o"),
        ("anthropic", "anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
        ("vertex_ai", "claude-sonnet-4-5@20250929", "google/claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4-5@20250929", "anthropic/claude-sonnet-4-5"),
        (
            "bedrock",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("google", "models/gemini-2.5-flash", "google/gemini-2.5-flash"),
        ("gemini", "gemini/gemini-2.5-flash", "google/gemini-2.5-flash"),
        ("google", "gemini-2.5-flash-preview-09-2025", "google/gemini-2.5-flash"),
        ("litellm", "vertex_ai/gemini-2.5-pro", "google/gemini-2.5-pro"),
    ],
)
def test_names_as_users_write_them_resolve(provider: str, name: str, priced_as: str) -> None:
    quote = BOOK.quote(provider, name, LATER)
    assert quote is not None, name
    assert f"{quote.provider}/{quote.model}" == priced_as


def test_bedrock_regional_ids_carry_the_regional_uplift() -> None:
    us = BOOK.price("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", LATER, CALL)
    direct = BOOK.price("anthropic", "claude-sonnet-4-5", LATER, CALL)
    assert us is not None and direct is not None
    assert us.cost_nusd * 10 == direct.cost_nusd * 11  # +10% on the regional endpoints


def test_unknown_model_has_no_price_rather_than_zero() -> None:
    assert BOOK.price("openai", "my-finetune-7b", AT, CALL) is None
    assert BOOK.price("acme-gateway", "nothing-known", AT, CALL) is None


def test_the_operators_file_overrides_adds_and_discounts() -> None:
    b = book(
        {
            "version": "acme-1",
            "models": [
                {
                    "model": "ft:gpt-4o-mini:acme::x1",
                    "provider": "openai",
                    "valid_from": "2025-01-01",
                    "input": "0.30",
                    "output": "1.20",
                    "cached_read": "0.15",
                },
                {
                    "model": "gpt-4o",
                    "provider": "openai",
                    "valid_from": "2026-06-01",
                    "input": "2.00",
                    "output": "8.00",
                    "aliases": ["prod-4o"],
                },
                {
                    "model": "llama-70b-selfhosted",
                    "provider": "vllm",
                    "valid_from": "2025-01-01",
                    "input": "0.0421",
                    "output": "0.0421",
                },
            ],
            "discounts": [{"provider": "anthropic", "percent": "15", "valid_from": "2026-03-01"}],
            "deployments": {"prod-chat": "gpt-4o-mini"},
        }
    )
    tokens = TokenCounts(input=1000, output=100)
    ft = b.quote("openai", "ft:gpt-4o-mini:acme::x1", AT)
    assert (
        ft is not None and ft.source == "file" and ft.cost_nusd(tokens) == 1000 * 300 + 100 * 1200
    )
    # the file's gpt-4o holds from 2026-06-01; before, the source's price applies
    assert b.price("openai", "gpt-4o", AT, tokens).cost_nusd == 1000 * 2500 + 100 * 10_000  # type: ignore[union-attr]
    assert b.price("openai", "gpt-4o", LATER, tokens).cost_nusd == 1000 * 2000 + 100 * 8000  # type: ignore[union-attr]
    assert b.price("azure", "PROD-4O", LATER, tokens).cost_nusd == 1000 * 2000 + 100 * 8000  # type: ignore[union-attr]
    own = b.price("vllm", "llama-70b-selfhosted", AT, TokenCounts(input=3, output=0))
    assert own is not None and own.cost_nusd == 126  # 3 x 42.1 nano = 126.3 -> 126
    # a negotiated 15% off Anthropic's list prices, from its date
    before = b.price("anthropic", "claude-sonnet-4-5", datetime(2026, 2, 1, tzinfo=UTC), tokens)
    after = b.price("anthropic", "claude-sonnet-4-5", datetime(2026, 4, 1, tzinfo=UTC), tokens)
    assert before is not None and before.cost_nusd == 1000 * 3000 + 100 * 15000
    assert after is not None and after.cost_nusd == (1000 * 3000 + 100 * 15000) * 85 // 100
    assert after.pricing_version.endswith("-15%")
    deployed = b.quote("azure", "prod-chat", LATER)
    assert deployed is not None and deployed.model == "gpt-4o-mini"


def test_rounds_once_half_to_even() -> None:
    b = book(
        {
            "models": [
                {
                    "model": "m",
                    "provider": "p",
                    "valid_from": "2020-01-01",
                    "input": "0.0015",
                    "output": "0",
                }
            ]
        }
    )
    quote = b.quote("p", "m", AT)
    assert quote is not None
    # 1.5 nano -> 2, 4.5 -> 4, 3.0 -> 3, 7.5 -> 8: half to even, one rounding per call
    assert [quote.cost_nusd(TokenCounts(input=n, output=0)) for n in (1, 3, 2, 5)] == [2, 4, 3, 8]


def test_reference_models_by_route() -> None:
    b = book({"reference_models": {"default": "gpt-4o", "routes": {"classify": "gpt-4o-mini"}}})
    assert (b.reference_model("classify"), b.reference_model("rag")) == ("gpt-4o-mini", "gpt-4o")
    ref = b.reference_quote("classify", AT)
    assert ref is not None and ref.cost_nusd(TokenCounts(input=1000, output=0)) == 150_000


def test_sum_of_many_costs_is_exact() -> None:
    costs = []
    for i in range(1, 1001):
        priced = BOOK.price("openai", "gpt-4o-mini", AT, TokenCounts(input=i, output=i // 2))
        assert priced is not None
        costs.append(priced.cost_nusd)
    expected = sum(
        (Decimal(i) * Decimal("0.15") + Decimal(i // 2) * Decimal("0.60")) * 1000
        for i in range(1, 1001)
    )
    assert sum(costs) == int(expected)


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {
                "models": [
                    {
                        "model": "m",
                        "provider": "p",
                        "valid_from": "2020-01-01",
                        "input": 2.5,
                        "output": "1",
                    }
                ]
            },
            "write prices as strings",
        ),
        ({"reference_models": {"default": "no-such-model"}}, "reference model 'no-such-model'"),
        (
            {
                "models": [
                    {
                        "model": "m",
                        "provider": "p",
                        "valid_from": "2020-01-01",
                        "input": "1",
                        "output": "1",
                    },
                    {
                        "model": "m",
                        "provider": "p",
                        "valid_from": "2020-01-01",
                        "input": "2",
                        "output": "2",
                    },
                ]
            },
            "two entries with the same valid_from",
        ),
        (
            {
                "models": [
                    {
                        "model": "m",
                        "provider": "p",
                        "valid_from": "2020-01-01",
                        "input": "-1",
                        "output": "1",
                    }
                ]
            },
            "models.0.input",
        ),
        (
            {"discounts": [{"provider": "openai", "percent": "150", "valid_from": "2026-01-01"}]},
            "discounts.0.percent",
        ),
    ],
)
def test_bad_files_are_refused_with_the_place_to_fix(
    tmp_path: Path, doc: object, message: str
) -> None:
    with pytest.raises(PriceFileError, match=message):
        load_price_book(write(tmp_path, doc))


def test_unreadable_and_non_json_files(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="cannot read price file"):
        load_price_book(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(PriceFileError, match="not valid JSON"):
        load_price_book(bad)


def test_env_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {
        "version": "mine",
        "models": [
            {"model": "m", "provider": "p", "valid_from": "2020-01-01", "input": "1", "output": "2"}
        ],
    }
    monkeypatch.setenv("TOKENLEDGER_PRICES", str(write(tmp_path, doc)))
    assert load_price_book().overrides.version == "mine"


def test_a_known_provider_that_does_not_sell_the_model_leaves_it_unpriced() -> None:
    # mislabelled: OpenAI does not sell Claude; pricing it at Anthropic's would hide the error
    assert BOOK.quote("openai", "claude-sonnet-4-5", LATER) is None
    # a gateway's own provider name: the model name finds the provider
    quote = BOOK.quote("my-gateway", "claude-sonnet-4-5", LATER)
    assert quote is not None and quote.provider == "anthropic"


@given(
    rates=st.lists(
        st.decimals(
            min_value=0, max_value=100_000, places=6, allow_nan=False, allow_infinity=False
        ),
        min_size=7,
        max_size=7,
    ),
    counts=st.lists(st.integers(0, 2_000_000), min_size=6, max_size=6),
)
def test_integer_costs_equal_the_decimal_sum_rounded_half_even(
    rates: list[Decimal], counts: list[int]
) -> None:
    r = Rates(tuple(rates[:6]), rates[6])  # type: ignore[arg-type]
    uncached, cached, w5, w1h, visible, reasoning = counts
    tokens = TokenCounts(
        input=uncached + cached + w5 + w1h,
        output=visible + reasoning,
        cached_input=cached,
        cache_write=w5 + w1h,
        cache_write_1h=w1h,
        reasoning=reasoning,
    )
    exact = rates[6] + sum(n * rate for n, rate in zip(counts, rates[:6], strict=True))
    assert r.cost_nusd(tokens) == int(exact.to_integral_value(ROUND_HALF_EVEN))


def test_batch_discounts_fill_in_where_the_source_has_no_batch_price() -> None:
    # genai-prices has OpenAI's batch prices from 2026-10-14; before, the operator's 50%
    b = book({"batch_discounts": {"openai": "50"}})
    tokens = TokenCounts(input=1000, output=100)
    early = b.price("openai", "gpt-4o", AT, tokens, CallContext(batch=True))
    late = b.price("openai", "gpt-4o", LATER, tokens, CallContext(batch=True))
    assert early is not None and early.cost_nusd == (1000 * 2500 + 100 * 10_000) // 2
    assert early.pricing_version.endswith("-batch50%")
    # from the source's batch price on, that price alone (not halved twice)
    assert late is not None and late.cost_nusd == 1000 * 1250 + 100 * 5000
    assert BOOK.price("openai", "gpt-4o", AT, tokens, CallContext(batch=True)).cost_nusd == (  # type: ignore[union-attr]
        1000 * 2500 + 100 * 10_000
    )  # without the file: the list price, as the source says

"""The pricing function: exact to the nano-dollar, effective-dated, never a silent $0."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from schemas.pricing import (
    PriceTable,
    PriceTableError,
    PriceTableFile,
    TokenCounts,
    cost_nusd,
    load_price_table,
)

AT = datetime(2026, 1, 15, tzinfo=UTC)
CALL = TokenCounts(input=3500, output=420, cached_input=1024, reasoning=128)


def table(models: list[dict[str, Any]], routes: dict[str, str] | None = None) -> PriceTable:
    return PriceTable(
        PriceTableFile.model_validate(
            {
                "version": "t1",
                "reference_models": {"default": models[0]["model"], "routes": routes or {}},
                "models": models,
            }
        )
    )


def test_gpt_4o_call_costs_exactly_its_token_classes() -> None:
    # uncached 2476 x $2.50 + cached 1024 x $1.25 + visible out 292 x $10 + reasoning 128 x $10
    # = $11,670 per 1M tokens = 11,670,000 nano-USD
    priced = load_price_table().price("gpt-4o", AT, CALL)
    assert priced is not None
    assert priced.cost_nusd == 11_670_000
    assert priced.pricing_version == "2026-11-01:gpt-4o@2024-10-01"


def test_batch_discount_applies_to_the_whole_call() -> None:
    priced = load_price_table().price("gpt-4o", AT, CALL, batch=True)
    assert priced is not None and priced.cost_nusd == 5_835_000


def test_anthropic_cache_write_has_its_own_rate() -> None:
    # 10,000 prompt tokens: 6,000 written to cache ($3.75), 2,000 read ($0.30), 2,000 plain ($3)
    tokens = TokenCounts(input=10_000, output=500, cached_input=2_000, cache_write=6_000)
    priced = load_price_table().price("claude-sonnet-4-5", AT, tokens)
    assert priced is not None
    assert priced.cost_nusd == (6_000 * 3750 + 2_000 * 300 + 2_000 * 3000 + 500 * 15000)


def test_effective_dating_picks_the_rate_in_force() -> None:
    prices = load_price_table()
    tokens = TokenCounts(input=1_000_000, output=0)
    before_cut = prices.price("o3", datetime(2025, 5, 1, tzinfo=UTC), tokens)
    after_cut = prices.price("o3", datetime(2025, 7, 1, tzinfo=UTC), tokens)
    exactly_at = prices.price("o3", datetime(2025, 6, 10, tzinfo=UTC), tokens)
    assert before_cut is not None and before_cut.cost_nusd == 10_000_000_000
    assert after_cut is not None and after_cut.cost_nusd == 2_000_000_000
    assert exactly_at is not None and exactly_at.cost_nusd == 2_000_000_000
    assert prices.price("o3", datetime(2025, 4, 15, tzinfo=UTC), tokens) is None


def test_unknown_model_has_no_price_rather_than_zero() -> None:
    assert load_price_table().price("my-finetune-7b", AT, CALL) is None


def test_aliases_price_like_their_model() -> None:
    prices = load_price_table()
    alias, model = prices.price("gpt-4o-2024-08-06", AT, CALL), prices.price("gpt-4o", AT, CALL)
    # 2,476 plain x $2.50 + 1,024 cached x $1.25 + 420 out x $10.00, per 1M: $0.01167
    assert alias is not None and model is not None
    assert (alias.cost_nusd, model.cost_nusd) == (11_670_000, 11_670_000)


def test_rounds_once_half_to_even() -> None:
    t = table([{"model": "m", "provider": "p", "valid_from": "2020-01-01",
                "input": "0.0015", "output": "0"}])  # fmt: skip
    rate = t.lookup("m", AT)
    assert rate is not None
    # 1.5 nano -> 2, 2.5 -> 2, 4.5 -> 4, 3.0 -> 3: half to even, one rounding per call
    assert [cost_nusd(rate, TokenCounts(input=n, output=0)) for n in (1, 3, 2, 5)] == [2, 4, 3, 8]


def test_counterfactual_is_reference_model_without_cache_or_batch() -> None:
    t = table(
        [
            {"model": "big", "provider": "p", "valid_from": "2020-01-01", "input": "3.00",
             "output": "15.00", "cached_read": "0.30", "batch_discount": "0.5"},
            {"model": "small", "provider": "p", "valid_from": "2020-01-01", "input": "0.10",
             "output": "0.40"},
        ],
        routes={"classify": "small"},
    )  # fmt: skip
    assert t.reference_model("classify") == "small"
    assert t.reference_model("anything-else") == "big"
    assert t.counterfactual("rag", AT, CALL) == 3500 * 3000 + 420 * 15000
    assert t.counterfactual("classify", AT, CALL) == 3500 * 100 + 420 * 400


def test_sum_of_many_costs_is_exact() -> None:
    prices = load_price_table()
    costs = []
    for i in range(1, 1001):
        priced = prices.price("gpt-4o-mini", AT, TokenCounts(input=i, output=i // 2))
        assert priced is not None
        costs.append(priced.cost_nusd)
    expected = sum(
        (Decimal(i) * Decimal("0.15") + Decimal(i // 2) * Decimal("0.60")) * 1000
        for i in range(1, 1001)
    )
    assert sum(costs) == int(expected)


def test_default_table_is_sane() -> None:
    prices = load_price_table()
    for model in prices.models():
        rate = prices.lookup(model, datetime(2030, 1, 1, tzinfo=UTC))
        assert rate is not None, model
        assert rate.cached_read is None or rate.cached_read <= rate.input, model
        assert rate.output >= rate.input, model


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"version": "x", "reference_models": {"default": "m"}, "models": [
            {"model": "m", "provider": "p", "valid_from": "2020-01-01", "input": 2.5,
             "output": "1"}]}, "write prices as strings"),
        ({"version": "x", "reference_models": {"default": "other"}, "models": [
            {"model": "m", "provider": "p", "valid_from": "2020-01-01", "input": "1",
             "output": "1"}]}, "reference model 'other' has no price"),
        ({"version": "x", "reference_models": {"default": "m"}, "models": [
            {"model": "m", "provider": "p", "valid_from": "2020-01-01", "input": "1", "output": "1"},
            {"model": "m", "provider": "p", "valid_from": "2020-01-01", "input": "2", "output": "2"},
        ]}, "two entries with the same valid_from"),
        ({"version": "x", "reference_models": {"default": "m"}, "models": [
            {"model": "m", "provider": "p", "valid_from": "2020-01-01", "input": "-1",
             "output": "1"}]}, "models.0.input"),
    ],
)  # fmt: skip
def test_bad_tables_are_refused_with_the_place_to_fix(
    tmp_path: Path, doc: object, message: str
) -> None:
    with pytest.raises(PriceTableError, match=message):
        load_price_table(write(tmp_path, doc))


def test_unreadable_and_non_json_tables(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="cannot read price table"):
        load_price_table(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(PriceTableError, match="not valid JSON"):
        load_price_table(bad)


def test_env_variable_overrides_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = {"version": "mine", "reference_models": {"default": "m"}, "models": [
        {"model": "m", "provider": "p", "valid_from": "2020-01-01", "input": "1", "output": "2"}]}  # fmt: skip
    monkeypatch.setenv("TOKENLEDGER_PRICES", str(write(tmp_path, doc)))
    assert load_price_table().version == "mine"

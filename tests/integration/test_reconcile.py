"""Reconciliation with the providers' own reports: the ledger matches the bill exactly when
it is right, and shows the difference when a day is missing or a price is off."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import factories
from tests.helpers.cli import one_line_error, tl
from tests.helpers.paths import ROOT
from tokenledger.contract.price_book import PriceBook, load_price_book
from tokenledger.contract.price_file import Overrides, PriceFile
from tokenledger.contract.rows import UsageRow
from tokenledger.streams.analytics import queries, reconcile
from tokenledger.streams.analytics.provider_reports import ReportError, read_report
from tokenledger.streams.sink import migrations
from tokenledger.streams.worker.price import enrich

pytestmark = pytest.mark.integration

FIXTURES = ROOT / "tests" / "fixtures" / "reconcile"
DAY1, DAY2 = datetime(2025, 11, 1, 9, tzinfo=UTC), datetime(2025, 11, 2, 15, tzinfo=UTC)
# the calls the fixtures bill: OpenAI's reference-example shapes, these tokens
OPENAI_CALLS = [
    dict(ts=DAY1, model="gpt-4o", input_tokens=3500, output_tokens=420, cached_input_tokens=1024),
    dict(ts=DAY1, model="gpt-4o-2024-08-06", input_tokens=1500, output_tokens=380),
    dict(ts=DAY2, model="openai/gpt-4o-mini", input_tokens=2000, output_tokens=100),
]
ANTHROPIC_CALL = dict(
    ts=DAY1,
    model="claude-sonnet-4-5",
    provider="anthropic",
    input_tokens=5000,
    output_tokens=500,
    cached_input_tokens=2000,
    cache_write_tokens=2000,
    cache_write_1h_tokens=1000,
)


def ledger(ch: Any, book: PriceBook, calls: list[dict[str, Any]]) -> None:
    rows = []
    for i, call in enumerate(calls):
        fields = {
            "provider": "openai",
            "reasoning_tokens": 0,
            "cached_input_tokens": 0,
            "cache_write_tokens": 0,
            "cost_nusd": None,
            "cache": "none",
            "batch": False,
            **call,
        }
        event = factories.usage(event_id=f"e-{i}", idempotency_key=f"k-{i}", **fields)
        enriched = enrich(event, book, duplicate_generation=False, late=False, now=DAY2)
        rows.append(UsageRow.from_message(enriched.as_message()).values() + [0, i])
    ch.insert("usage_events", rows, column_names=UsageRow.insert_columns())


def compare(ch: Any, *files: str, provider: str) -> dict[tuple[str, str], dict[str, Any]]:
    book = load_price_book()
    for name in files:
        reconcile.store(ch, read_report(provider, FIXTURES / name), name)
    reconcile.refresh_model_keys(ch, book)
    query = queries.get("reconciliation")
    columns, rows = queries.run(
        ch, query, query.bind({"start": "2025-11-01", "end": "2025-11-02", "provider": provider})
    )
    return {(str(r[0]), r[1]): dict(zip(columns, r, strict=True)) for r in rows}


def test_openai_bill_matches_a_right_ledger_exactly(ch: Any) -> None:
    migrations.migrate(ch)
    ledger(ch, load_price_book(), OPENAI_CALLS)
    got = compare(ch, "openai_costs.json", "openai_usage.json", provider="openai")
    assert got.keys() == {("2025-11-01", "openai/gpt-4o"), ("2025-11-02", "openai/gpt-4o-mini")}
    day1 = got[("2025-11-01", "openai/gpt-4o")]
    # 3,976 uncached x $2.50 + 1,024 cached x $1.25 + 800 out x $10 per 1M = $0.01922
    assert (day1["ledger_cost_nusd"], day1["provider_cost_nusd"]) == (19_220_000, 19_220_000)
    assert (day1["ledger_input_tokens"], day1["provider_input_tokens"]) == (5000, 5000)
    assert (day1["ledger_output_tokens"], day1["provider_output_tokens"]) == (800, 800)
    assert (day1["difference_nusd"], day1["ledger_calls"], day1["unpriced_calls"]) == (0, 2, 0)
    day2 = got[("2025-11-02", "openai/gpt-4o-mini")]
    assert (day2["ledger_cost_nusd"], day2["provider_cost_nusd"], day2["difference_nusd"]) == (
        360_000,
        360_000,
        0,
    )


def test_a_missing_day_and_a_wrong_price_show_as_differences(ch: Any) -> None:
    migrations.migrate(ch)
    # the operator's file prices gpt-4o input at $2.00 instead of the list $2.50; day 2 lost
    cheap = PriceBook(
        Overrides(
            PriceFile.model_validate(
                {
                    "models": [
                        {
                            "model": "gpt-4o",
                            "provider": "openai",
                            "valid_from": "2024-01-01",
                            "input": "2.00",
                            "output": "10.00",
                            "cached_read": "1.25",
                            "aliases": ["gpt-4o-2024-08-06"],
                        }
                    ]
                }
            )
        )
    )
    ledger(ch, cheap, OPENAI_CALLS[:2])
    got = compare(ch, "openai_costs.json", provider="openai")
    day1 = got[("2025-11-01", "openai/gpt-4o")]
    assert day1["difference_nusd"] == -3976 * 500  # 3,976 uncached tokens $0.50 per 1M short
    assert float(day1["difference_pct"]) == round(-3976 * 500 * 100 / 19_220_000, 2)
    assert day1["provider_input_tokens"] is None  # no usage report imported
    day2 = got[("2025-11-02", "openai/gpt-4o-mini")]
    assert (day2["ledger_calls"], day2["ledger_cost_nusd"], day2["difference_nusd"]) == (
        0,
        0,
        -360_000,
    )
    assert float(day2["difference_pct"]) == -100.0


def test_anthropic_cost_and_usage_reports_match_with_one_hour_writes(ch: Any) -> None:
    migrations.migrate(ch)
    unknown = dict(
        ts=DAY1,
        model="claude-internal-preview",
        provider="anthropic",
        input_tokens=7000,
        output_tokens=10,
    )
    ledger(ch, load_price_book(), [ANTHROPIC_CALL, unknown])
    got = compare(
        ch, "anthropic_cost_report.json", "anthropic_usage_report.json", provider="anthropic"
    )
    row = got[("2025-11-01", "anthropic/claude-sonnet-4-5")]
    # 1,000 x $3 + 2,000 x $0.30 + 1,000 x $3.75 (5 min) + 1,000 x $6 (1 h) + 500 x $15 per 1M
    assert (row["ledger_cost_nusd"], row["provider_cost_nusd"], row["difference_nusd"]) == (
        20_850_000,
        20_850_000,
        0,
    )
    assert (row["ledger_input_tokens"], row["provider_input_tokens"]) == (5000, 5000)
    gap = got[("2025-11-01", "anthropic/claude-internal-preview")]
    assert (gap["unpriced_calls"], gap["unpriced_tokens"], gap["provider_cost_nusd"]) == (
        1,
        7010,
        None,
    )


def test_reports_of_other_shapes_are_refused_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "page.json"
    bad.write_text('{"data": [{"start_time": 1761955200, "results": [{"object": "x"}]}]}')
    with pytest.raises(ReportError, match="result object 'x' is neither"):
        read_report("openai", bad)
    with pytest.raises(ReportError, match="is not a anthropic cost or usage report"):
        read_report("anthropic", FIXTURES / "openai_costs.json")
    with pytest.raises(ReportError, match="holds no openai cost or usage rows"):
        read_report("openai", _empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.json"
    path.write_text('{"object": "page", "data": [], "has_more": false, "next_page": null}')
    return path


def test_reconcile_command(cli_env: dict[str, str]) -> None:
    assert tl(cli_env, "migrate").returncode == 0
    done = tl(cli_env, "reconcile", "--provider", "openai", str(FIXTURES / "openai_costs.json"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"stored 4 openai cost rows from {FIXTURES / 'openai_costs.json'}"
    assert lines[1].split()[:3] == ["Day", "Model", "Calls"]
    # an empty ledger: the whole bill is the difference
    assert lines[2].split() == [
        "2025-11-01",
        "openai/gpt-4o",
        "0",
        "0",
        "-",
        "0",
        "-",
        "$0.00",
        "$0.01922",
        "-$0.01922",
        "-100.00%",
        "0",
        "0",
    ]
    one_line_error(
        tl(cli_env, "reconcile", "--provider", "openai", "/nope.json"), 2, "cannot read /nope.json"
    )

"""`tokenledger prices`: which source prices a model and why, the operator's file checked,
and what a genai-prices upgrade would change."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import one_line_error, tl
from tests.helpers.paths import ROOT
from tokenledger.contract.price_source import GENAI_PRICES_VERSION, PriceSource

NEXT = ROOT / "tests" / "fixtures" / "prices" / "genai_prices_next.json"
SOURCE = f"genai-prices {GENAI_PRICES_VERSION}"


def test_show_names_the_source_the_match_and_the_rates(cli_env: dict[str, str]) -> None:
    done = tl(
        cli_env,
        "prices",
        "show",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "--provider",
        "bedrock",
        "--at",
        "2026-11-01",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "bedrock us.anthropic.claude-sonnet-4-5-20250929-v1:0 at 2026-11-01T00:00:00+00:00",
        "  genai-prices matches it as aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        f"  priced by {SOURCE} as aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        f"  pricing_version {SOURCE}:aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "  per 1M tokens: input $3.3, cached_read $0.33, cache_write_5m $4.125, "
        "cache_write_1h $6.6, output $16.5, reasoning $16.5",
    ]


def test_show_the_price_before_a_change_and_for_a_batch(cli_env: dict[str, str]) -> None:
    old = tl(cli_env, "prices", "show", "o3", "--at", "2025-06-09")
    assert "  per 1M tokens: input $10," in old.stdout
    batch = tl(
        cli_env, "prices", "show", "gpt-4o", "--provider", "openai", "--batch", "--at", "2026-11-01"
    )
    assert "  per 1M tokens: input $1.25, cached_read $1.25," in batch.stdout
    assert f"pricing_version {SOURCE}:openai/gpt-4o@2026-10-14" in batch.stdout


def test_own_file_wins_and_unknown_names_say_how_to_price_them(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "version": "acme-7",
                "models": [
                    {
                        "model": "ft:gpt-4o-mini:acme::x1",
                        "provider": "openai",
                        "valid_from": "2025-01-01",
                        "input": "0.30",
                        "output": "1.20",
                    }
                ],
            }
        )
    )
    env = {**cli_env, "TOKENLEDGER_PRICES": str(prices)}
    own = tl(env, "prices", "show", "ft:gpt-4o-mini:acme::x1")
    assert f"  priced by the price file {prices} as openai/ft:gpt-4o-mini:acme::x1" in own.stdout
    assert "  pricing_version file acme-7:ft:gpt-4o-mini:acme::x1@2025-01-01" in own.stdout
    unknown = tl(env, "prices", "show", "my-model-9")
    assert unknown.returncode == 0
    assert unknown.stdout.splitlines()[1] == (
        "  unpriced: no entry in the price file and genai-prices does not know it; add it to "
        "the file named by TOKENLEDGER_PRICES"
    )
    check = tl(env, "prices", "check")
    assert check.stdout.startswith(f"price file {prices} (acme-7): 1 model entries, 0 discounts")
    listed = tl(env, "prices", "list").stdout.splitlines()
    source_models = sum(len(p.models) for p in PriceSource().snapshot.providers)
    assert len(listed) == source_models + 1
    assert listed[0].split()[:2] == ["file", "openai/ft:gpt-4o-mini:acme::x1"]


def test_diff_lists_what_an_upgrade_changes(cli_env: dict[str, str]) -> None:
    done = tl(cli_env, "prices", "diff", str(NEXT), "--at", "2026-11-01")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert (
        "added    openai/gpt-9  input $20, cached_read $20, cache_write_5m $20, "
        "cache_write_1h $20, output $80, reasoning $80" in lines
    )
    (changed,) = [line for line in lines if line.startswith("changed")]
    assert changed.startswith("changed  openai/gpt-4o  input $2.5, cached_read $1.25,")
    assert changed.endswith(
        "->  input $2, cached_read $1, cache_write_5m $2, cache_write_1h $2, "
        "output $8, reasoning $8"
    )
    source_models = sum(len(p.models) for p in PriceSource().snapshot.providers)
    assert lines[-1] == (
        f"moving from {SOURCE} to {NEXT}: 1 added, {source_models - 2} removed, 1 changed"
    )


def test_mistakes_are_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    one_line_error(tl(cli_env, "prices", "show"), 2, "prices show needs a MODEL")
    one_line_error(
        tl(cli_env, "prices", "show", "o3", "--at", "soon"), 2, "--at 'soon' is not a date"
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": [{"model": "m"}]}')
    one_line_error(
        tl(cli_env, "prices", "check", "--file", str(bad)),
        2,
        f"price file {bad}: models.0.provider: Field required",
    )
    one_line_error(
        tl(cli_env, "prices", "diff", str(bad)), 2, f"{bad} is not a genai-prices data file"
    )

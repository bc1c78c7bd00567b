"""Context budgets counted with tiktoken (offline ranks installed by `tokenledger setup`)."""

from __future__ import annotations

import pytest

from tokenledger.context_budget import DEFAULT_BUDGETS, ContextBudget
from tokenledger.tokens import count_tokens

MODEL = "gpt-4o"


def words(n: int) -> str:
    """n tokens exactly: ' hello' is one o200k token."""
    return "hello" + " hello" * (n - 1)


def test_word_helper_is_exact() -> None:
    assert [count_tokens(words(n), MODEL) for n in (1, 10, 500)] == [1, 10, 500]


def test_guide_defaults() -> None:
    assert dict(DEFAULT_BUDGETS) == {
        "system": 400,
        "developer": 500,
        "conversation": 1500,
        "retrieved": 3500,
        "tool_results": 1000,
        "output": 800,
    }


def test_measure_counts_segments_and_names_violations() -> None:
    report = ContextBudget(MODEL).measure(
        system=words(401),
        conversation=[words(700), words(800)],
        retrieved=words(10),
        max_output_tokens=1000,
    )
    assert report.counts == {"system": 401, "conversation": 1500, "retrieved": 10, "output": 1000}
    assert report.violations == ("system", "output")
    assert report.input_tokens == 1911


def test_route_overrides() -> None:
    budget = ContextBudget(MODEL, routes={"rag": {"retrieved": 6000}})
    assert budget.for_route("rag").budgets["retrieved"] == 6000
    assert budget.for_route("classify").budgets["retrieved"] == 3500
    assert budget.for_route("rag").measure(retrieved=words(5000)).violations == ()


def test_fit_keeps_the_best_chunks_that_fit() -> None:
    chunks = [words(2000), words(1000), words(900), words(400), words(200)]
    kept = ContextBudget(MODEL).fit(chunks)
    # 2000 + 1000 fit (3000); 900 does not (3900 > 3500); 400 fits (3400); 200 does not
    assert kept == [chunks[0], chunks[1], chunks[3]]
    assert ContextBudget(MODEL).fit(chunks, budget=950) == [chunks[2]]


def test_unknown_segment_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown segment"):
        ContextBudget(MODEL).measure(memories="x")

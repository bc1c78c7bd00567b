"""Per-segment token budgets for a prompt, counted with tiktoken.

Defaults follow the cost guide: system 400, developer 500, conversation 1500, retrieved
3500, tool results 1000, output 800 tokens; a route may override any of them. ``fit()``
keeps the best retrieved chunks that fit instead of sending all of them; ``measure()``
names the segments over budget, which the SDK records on the usage event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenledger.tokens import count_tokens

DEFAULT_BUDGETS: Mapping[str, int] = {
    "system": 400,
    "developer": 500,
    "conversation": 1500,
    "retrieved": 3500,
    "tool_results": 1000,
    "output": 800,
}


@dataclass(frozen=True)
class ContextReport:
    counts: Mapping[str, int]
    budgets: Mapping[str, int]
    violations: tuple[str, ...]

    @property
    def input_tokens(self) -> int:
        return sum(n for segment, n in self.counts.items() if segment != "output")


class ContextBudget:
    def __init__(
        self,
        model: str,
        budgets: Mapping[str, int] | None = None,
        routes: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.model = model
        self.budgets = {**DEFAULT_BUDGETS, **(budgets or {})}
        self.routes = {route: dict(b) for route, b in (routes or {}).items()}
        for name, limit in self.budgets.items():
            if limit < 0:
                raise ValueError(f"budget for {name!r} is negative")

    def for_route(self, route: str) -> ContextBudget:
        """This budget with the route's overrides applied."""
        return ContextBudget(self.model, {**self.budgets, **self.routes.get(route, {})})

    def count(self, text: str | Sequence[str]) -> int:
        if isinstance(text, str):
            return count_tokens(text, self.model)
        return sum(count_tokens(t, self.model) for t in text)

    def measure(
        self, *, max_output_tokens: int | None = None, **segments: str | Sequence[str]
    ) -> ContextReport:
        """Token counts per segment and the segments over their budget."""
        unknown = set(segments) - set(self.budgets)
        if unknown:
            raise ValueError(f"unknown segment(s) {sorted(unknown)}; known: {sorted(self.budgets)}")
        counts = {name: self.count(text) for name, text in segments.items()}
        if max_output_tokens is not None:
            counts["output"] = max_output_tokens
        over = tuple(name for name, n in counts.items() if n > self.budgets[name])
        return ContextReport(counts, dict(self.budgets), over)

    def trimmed_tokens(self, chunks: Sequence[str], kept: Sequence[str]) -> int:
        """Tokens of ``chunks`` that ``kept`` leaves out: pass it to ``track()`` as
        ``context_trimmed_tokens`` so the savings waterfall prices the context budget."""
        return self.count(list(chunks)) - self.count(list(kept))

    def fit(self, chunks: Sequence[str], budget: int | None = None) -> list[str]:
        """The chunks to send, best first: ``chunks`` are ranked best first; each is kept
        when it still fits the remaining budget (a chunk too large is skipped, smaller
        later ones may still fit). ``budget`` defaults to the retrieved budget."""
        remaining = self.budgets["retrieved"] if budget is None else budget
        kept = []
        for chunk in chunks:
            n = count_tokens(chunk, self.model)
            if n <= remaining:
                kept.append(chunk)
                remaining -= n
        return kept

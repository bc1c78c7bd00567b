"""A gateway's answer: may this call go to a model, and why (or why not)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal[
    "allow", "warn", "block", "guardrail", "unavailable", "retry_budget", "breaker", "probe"
]
"""``retry_budget``: a retry refused, the route's retry budget is used; ``breaker``: the
circuit is open (or half-open and this call is not a probe); ``probe``: half-open, this
call is let through to test the provider."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    state: State
    reason: str
    scope: str | None = None
    degraded: bool = False


ALLOW = Decision(True, "allow", "no budget signal limits this scope")

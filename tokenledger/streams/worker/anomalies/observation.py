"""What a detector says of a scope's minute: observed against expected, in a unit, over a
window, and whether there was evidence enough to judge. Incidents fire and resolve on
observations; an alert's evidence and summary are taken from the one that fired."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tokenledger.streams.worker.anomalies.onset import Onset

SPEND_UNIT = "nusd/2min"
MIX_UNIT = "x1000_reference"
"""model_mix: the price level, 1000 = the route's reference model on the same tokens."""


@dataclass(frozen=True)
class Observation:
    observed: int
    expected: int
    unit: str
    volume_ok: bool
    start_ms: int
    end_ms: int
    summary: Callable[[], str] = field(default=lambda: "", repr=False)
    """Built only for an alert (formatting every evaluation's text would cost more than the
    evaluation)."""
    evidence: int = 0
    """Calls the judgement rests on (where the detector counts them)."""
    onset: Onset | None = field(default=None, repr=False)
    """The change point behind the observation (onset.py), read only when it fires; None:
    the window's start."""

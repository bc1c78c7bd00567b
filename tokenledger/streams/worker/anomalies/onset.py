"""When an incident began: the change point behind a firing observation, so an alert is
dated at the change rather than at the start of the window that had evidence enough.

For each minute bucket back from the firing minute, a contribution says how far it sits
above the midpoint between the expectation and the observation (per call, or per minute for
spend); the change point is the minute from which the sum of contributions up to the firing
minute is largest (CUSUM's estimate). A stray outlier before the change does not move it
back: the ordinary minutes between them pull the sum down again. Ties go to the later
minute, so the change point is a bucket whose calls depart from the expectation (for
model_mix: the first bucket where the switched model's calls appear). A pure read of the
buckets, computed only when an incident fires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tokenledger.streams.worker.anomalies.buckets import (
    AUX1,
    AUX2,
    COST,
    EVENTS,
    MINUTE_MS,
    TOP1,
    Buckets,
)

LOOKBACK_MINUTES = 120
"""How far back a change point is searched (the buckets keep 130 minutes)."""

Onset = Callable[[int], int]
"""The change point (minute, epoch ms) of a firing observation, searched no earlier than
the given minute (the end of the scope's previous incident, or LOOKBACK_MINUTES back)."""


def change_point(contributions: Iterable[tuple[int, int]]) -> int | None:
    """The minute, of (minute, contribution) pairs newest first, from which the sum of the
    contributions to the newest is largest (the latest such minute); None when no such sum
    is positive."""
    best, best_sum, total = None, 0, 0
    for minute, contribution in contributions:
        total += contribution
        if total > best_sum:
            best, best_sum = minute, total
    return best


def _minutes(minute: int, floor: int) -> range:
    """The minutes from ``minute`` back to ``floor`` (and at most LOOKBACK_MINUTES), newest
    first."""
    first = max(floor, minute - (LOOKBACK_MINUTES - 1) * MINUTE_MS)
    return range(minute, first - 1, -MINUTE_MS)


def _per_call(
    b: Buckets,
    scope: str,
    minute: int,
    value: int,
    count: int,
    scale: int,
    expected: int,
    observed: int,
) -> Onset:
    """Share and mix detectors: each bucket's calls (field ``count``) with the values they
    carry (field ``value`` times ``scale``, summed), against the midpoint of ``expected``
    and ``observed`` per call."""
    middle2 = expected + observed  # twice the midpoint: contributions stay integers

    def onset(floor: int) -> int:
        def contributions() -> Iterable[tuple[int, int]]:
            for m in _minutes(minute, floor):
                entry = b.get(scope, m)
                if entry is not None:
                    yield m, 2 * entry[value] * scale - middle2 * entry[count]

        found = change_point(contributions())
        return minute if found is None else found

    return onset


def share_onset(b: Buckets, scope: str, minute: int, expected: int, observed: int) -> Onset:
    """retry_storm, context_growth: calls counted in AUX1 among EVENTS, in permille."""
    return _per_call(b, scope, minute, AUX1, EVENTS, 1000, expected, observed)


def mix_onset(b: Buckets, scope: str, minute: int, expected: int, observed: int) -> Onset:
    """model_mix: the price levels (AUX2) of the priced calls (AUX1)."""
    return _per_call(b, scope, minute, AUX2, AUX1, 1, expected, observed)


def spend_onset(
    b: Buckets,
    scope: str,
    minute: int,
    low: int,
    high: int,
    *,
    first: int = 0,
    without_top: bool = False,
) -> Onset:
    """Spend: each minute's spend (without its largest call with ``without_top``: one big
    call is no change) against the midpoint of ``low`` and ``high`` nano-USD a minute, from
    ``first`` on; a minute without calls counts as spending nothing."""

    def onset(floor: int) -> int:
        def contributions() -> Iterable[tuple[int, int]]:
            for m in _minutes(minute, max(floor, first)):
                entry = b.get(scope, m)
                spent = 0 if entry is None else entry[COST] - (entry[TOP1] if without_top else 0)
                yield m, 2 * spent - low - high

        found = change_point(contributions())
        return minute if found is None else found

    return onset

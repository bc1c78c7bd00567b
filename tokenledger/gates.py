"""Retry budgets and circuit breakers at the gateway: the decision from the signals alone.

A ``Gates`` holds the retry-budget blocks and open breakers read from the signals topic
(tokenledger.signal_book feeds it) and answers, before any budget question, whether this
call may go out at all:

- a retry (attempt > 1) on a route whose retry budget is used is refused; first attempts
  pass;
- a call to an open breaker's route x provider x model is refused at once (nobody pays for
  the time-out); once the guard's clock passes the signal's ``open_until`` the breaker is
  half-open and every guard lets ``probe_pct`` percent of its calls through as probes, by
  itself, until the worker publishes the result (closed, or open again for longer).

``open_until`` is in event time, the callers' clock, and guards compare it with their own
wall clock: the hosts of one deployment agree on the time to well under a second, and a
guard needs no further signal to start probing, so a breaker cannot stay shut because the
worker is idle.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC

from tokenledger.contract.call_control import BreakerSignal, RetryBudgetSignal
from tokenledger.decision import Decision

Clock = Callable[[], float]


def retry_decision(signal: RetryBudgetSignal, attempt: int) -> Decision | None:
    """A refusal of a retry on a route whose retry budget is used; None for first attempts."""
    if attempt <= 1 or signal.state != "block":
        return None
    return Decision(
        False, "retry_budget", f"attempt {attempt} refused: {signal.reason}", signal.scope
    )


def breaker_phase(signal: BreakerSignal, now_s: float) -> str:
    """``open``, ``half-open`` (the cool-down is over) or ``closed``."""
    if signal.state == "closed":
        return "closed"
    return "open" if now_s < signal.open_until.timestamp() else "half-open"


def probe_every(probe_pct: int) -> int:
    """One call in this many is a probe (10% -> every 10th)."""
    return max(1, -(-100 // probe_pct))


def breaker_decision(signal: BreakerSignal, now_s: float, call: int) -> Decision | None:
    """The decision for the ``call``-th check (from 0) of an open breaker at ``now_s``: a
    refusal while open, a probe or a refusal while half-open; None once closed."""
    phase = breaker_phase(signal, now_s)
    if phase == "closed":
        return None
    if phase == "open":
        until = signal.open_until.astimezone(UTC).strftime("%H:%M:%S")
        return Decision(
            False, "breaker", f"{signal.reason}; refused until {until} UTC", signal.scope
        )
    every = probe_every(signal.probe_pct)
    if call % every == 0:
        return Decision(
            True, "probe", f"{signal.reason}; half-open: this call is a probe", signal.scope
        )
    return Decision(
        False,
        "breaker",
        f"{signal.reason}; half-open: 1 call in {every} is a probe, this one is refused",
        signal.scope,
    )


class _Open:
    __slots__ = ("calls", "signal")

    def __init__(self, signal: BreakerSignal) -> None:
        self.signal = signal
        self.calls = itertools.count()  # next() is atomic under the GIL


class Gates:
    """What the signals say about retries and breakers, by tenant and route."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._retries: dict[tuple[str, str], RetryBudgetSignal] = {}
        self._breakers: dict[tuple[str, str, str, str], _Open] = {}

    def __bool__(self) -> bool:
        return bool(self._retries or self._breakers)

    def apply(self, signal: RetryBudgetSignal | BreakerSignal) -> None:
        if isinstance(signal, RetryBudgetSignal):
            key = (signal.tenant_id, signal.route)
            if signal.state == "block":
                self._retries[key] = signal
            else:
                self._retries.pop(key, None)
            return
        bkey = (signal.tenant_id, signal.route, signal.provider, signal.model)
        if signal.state == "open":
            self._breakers[bkey] = _Open(signal)
        else:
            self._breakers.pop(bkey, None)

    def check(
        self,
        tenant_id: str,
        route: str | None,
        attempt: int,
        provider: str | None,
        model: str | None,
    ) -> Decision | None:
        """A refusal (or a probe's pass), or None when neither limits this call."""
        route = route or ""
        if attempt > 1 and self._retries:
            retry = self._retries.get((tenant_id, route))
            if retry is not None:
                return retry_decision(retry, attempt)
        if provider and model and self._breakers:
            entry = self._breakers.get((tenant_id, route, provider, model))
            if entry is not None:
                now = self.clock()
                half_open = breaker_phase(entry.signal, now) == "half-open"
                return breaker_decision(entry.signal, now, next(entry.calls) if half_open else 0)
        return None

    def state(self) -> list[RetryBudgetSignal | BreakerSignal]:
        """The retry-budget blocks and open breakers held (a copy)."""
        return [*self._retries.values(), *(e.signal for e in self._breakers.values())]

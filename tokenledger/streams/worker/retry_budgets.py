"""Retry budgets: per tenant x route, retries (attempt > 1) against first attempts over a
sliding minute of event time, in count and in dollars.

A route is over budget when its retries reach ``max(min_per_minute, percent% of first
attempts)`` (20% and 10 by default: Linkerd's ratio and floor, Envoy's max form; see
docs/worker.md) or, with a dollar cap, when their cost reaches it. Its state is then ``block``:
guards refuse retries on it while first attempts pass, so the window keeps sliding and the
state goes back to ``allow`` as the retries age out. Like budget signals, only changes
are published (and, on a heartbeat, a standing block again).

Definitions come from the budgets topic (``tokenledger retry-budget set``); a route
without one has the defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from tokenledger.contract.call_control import RETRY_BUDGET, RetryBudget, RetryBudgetSignal, kind_of
from tokenledger.contract.call_control import retry_budget_scope as scope_of
from tokenledger.contract.common import format_usd
from tokenledger.freshness import Freshness
from tokenledger.streams.worker.sliding import Minute, window
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.state_keys import RETRY_STATE, RouteKey
from tokenledger.streams.worker.state_values import RetryMark

log = logging.getLogger(__name__)

ISSUER = "retry-budgets-worker"
_CLEANUP_EVERY_MS = 60_000
RetryState = Literal["allow", "block"]


@dataclass(frozen=True)
class Limits:
    percent: int = 20
    min_per_minute: int = 10
    max_retry_nusd: int | None = None

    def allowed(self, first_attempts: int) -> int:
        return max(self.min_per_minute, first_attempts * self.percent // 100)


DEFAULT = Limits()


def limits_of(budget: RetryBudget | None) -> Limits:
    if budget is None:
        return DEFAULT
    return Limits(budget.percent, budget.min_per_minute, budget.max_retry_nusd)


def evaluate(
    limits: Limits, route: str, first: int, retries: int, nusd: int
) -> tuple[RetryState, str]:
    """(state, reason) of a minute's counts against ``limits``."""
    allowed = limits.allowed(first)
    of = f"route {route!r}"
    if retries >= allowed:
        return "block", (
            f"retry budget of {of} used: {retries} retries against {first} first attempts "
            f"in a minute; it allows {allowed} ({limits.percent}% of first attempts, at "
            f"least {limits.min_per_minute}); first attempts pass"
        )
    cap = limits.max_retry_nusd
    if cap is not None and nusd >= cap:
        return "block", (
            f"retry budget of {of} used: retries cost {format_usd(nusd, exact=True)} in a "
            f"minute; it allows {format_usd(cap, exact=True)}; first attempts pass"
        )
    return "allow", f"{of} is within its retry budget ({retries} of {allowed} retries)"


class RetryBudgetConfigs:
    """Retry budget definitions by scope, from the budgets topic (the worker's
    ``BudgetDefinitions`` hands them over: one topic, one signature check, one freshness per
    scope)."""

    def __init__(self) -> None:
        self.by_scope: dict[str, RetryBudget] = {}
        self.invalid = 0

    def apply(
        self, scope: str, value: bytes | None, freshness: Freshness, issued_ms: int | None
    ) -> bool:
        """Take a record if it is a retry budget's (its definition, or a tombstone of a scope
        held here); True when taken."""
        if value is None:
            if scope not in self.by_scope:
                return False
            if issued_ms is None or freshness.accept(scope, issued_ms):
                del self.by_scope[scope]
            return True
        if kind_of(value) != RETRY_BUDGET:
            return False
        try:
            budget = RetryBudget.model_validate_json(value)
        except ValidationError as exc:
            self.invalid += 1
            log.warning(
                "ignoring an invalid retry budget for %r: %s", scope, exc.errors()[0]["msg"]
            )
            return True
        if freshness.accept(budget.scope, int(budget.updated_at.timestamp() * 1000)):
            self.by_scope[budget.scope] = budget
        return True

    def limits(self, tenant_id: str, route: str) -> Limits:
        return limits_of(self.by_scope.get(scope_of(tenant_id, route)))


class RetryBudgetTracker:
    """One partition's routes: their minute of attempts and the state last published, by
    state key (state_keys.RETRY_STATE: first attempts, retries and retry nano-USD per
    second)."""

    def __init__(self, state: State, configs: RetryBudgetConfigs) -> None:
        self.state = state
        self.configs = configs
        self.minutes: dict[str, Minute] = {}
        self.published: dict[str, tuple[RetryState, int]] = {}
        for key, value in state.items(RETRY_STATE.prefix):
            mark = RETRY_STATE.decode_value(value)
            self.minutes[key] = Minute.of(mark.seconds, 3)
            self.published[key] = ("block" if mark.state == "block" else "allow", mark.issued_ms)
        self._dirty: set[str] = set()
        self._cleaned_ms = 0

    def observe(self, tenant_id: str, route: str, attempt: int, cost_nusd: int, ts_ms: int) -> None:
        key = RETRY_STATE.encode_key(RouteKey(tenant_id, route))
        minute = self.minutes.get(key)
        if minute is None:
            minute = self.minutes[key] = Minute(3)
        if attempt > 1:
            minute.add(ts_ms, 0, 1, cost_nusd)
        else:
            minute.add(ts_ms, 1, 0, 0)
        self._dirty.add(key)

    def blocked(self) -> list[str]:
        return [k for k, (s, _) in self.published.items() if s == "block"]

    def end_batch(self, watermark_ms: int, now_ms: int, beat: bool) -> list[RetryBudgetSignal]:
        """Signals of the routes whose state changed (every blocked route is looked at
        again: the minute slides under it); with ``beat`` the blocks standing, again."""
        keys = self._dirty | set(self.blocked())
        if watermark_ms - self._cleaned_ms >= _CLEANUP_EVERY_MS:
            self._cleaned_ms = watermark_ms
            keys |= set(self.minutes)
        self._dirty = set()
        out = []
        for key in sorted(keys):
            signal = self._evaluate(key, watermark_ms, now_ms, beat)
            if signal is not None:
                out.append(signal)
        return out

    def _evaluate(
        self, key: str, watermark_ms: int, now_ms: int, beat: bool
    ) -> RetryBudgetSignal | None:
        tenant_id, route = RETRY_STATE.decode_key(key)
        minute = self.minutes[key]
        minute.slide(watermark_ms)
        first, retries, nusd = minute.totals()
        limits = self.configs.limits(tenant_id, route)
        state, reason = evaluate(limits, route, first, retries, nusd)
        last_state, last_issued = self.published.get(key, ("allow", 0))
        publish = state != last_state or (beat and state == "block")
        issued = max(now_ms, last_issued + 1) if publish else last_issued
        if not minute and state == "allow" and issued < now_ms:
            del self.minutes[key]
            self.published.pop(key, None)
            self.state.delete(key)
        else:
            self.published[key] = (state, issued)
            self.state.put(key, RETRY_STATE.encode_value(RetryMark(state, issued, minute.seconds)))
        if not publish:
            return None
        start, end = window(watermark_ms)
        return RetryBudgetSignal(
            scope=scope_of(tenant_id, route),
            tenant_id=tenant_id,
            route=route,
            state=state,
            reason=reason,
            first_attempts=first,
            retries=retries,
            retry_nusd=nusd,
            allowed_retries=limits.allowed(first),
            max_retry_nusd=limits.max_retry_nusd,
            window_start=_at(start),
            window_end=_at(end),
            issued_at=_at(issued),
            issuer=ISSUER,
        )


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)

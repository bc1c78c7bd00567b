"""Budgets: windows in the budget's timezone, spend, and the signal state machine (the
definitions are budget_definitions.py's).

Spend of a scope in its current window = committed usage cost + open reservations.
Committed cost is kept in 15-minute slots per tenant and tenant x feature (every real
timezone offset is a multiple of 15 minutes, so any budget window in any timezone is an
exact sum of slots); a budget set mid-window therefore counts what was already spent.
A request event reserves its estimated cost until the usage event of the same tenant,
request and attempt settles it, or until ``reservation_timeout`` passes (an orphan).
Request ids are the caller's: another tenant's ``req-1`` settles nothing of this one's.

The state of a scope is ``block`` at or over the limit, ``warn`` at or over a warn
threshold, else ``allow``. A signal is published only when that state (or its threshold,
or the window) changes: signals are idempotent state on a compacted topic, not edges.
When a window ends, its scopes are re-evaluated for the new window (normally ``allow``).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from tokenledger.contract.common import format_usd
from tokenledger.contract.days import midnight
from tokenledger.contract.messages import Budget, RequestEvent, Signal
from tokenledger.contract.names import budget_scope, parse_scope
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.price import Enriched
from tokenledger.streams.worker.state import State, holds
from tokenledger.streams.worker.state_keys import (
    OLD_SETTLED_REQUEST,
    RESERVATION,
    SETTLED,
    SETTLED_REQUEST,
    SIGNAL,
    SLOT,
    RequestKey,
    SlotKey,
    parse_dim,
    scope_dim,
)
from tokenledger.streams.worker.state_values import Reservation, SignalMark

log = logging.getLogger(__name__)

SLOT_MS = 15 * 60_000
SLOT_KEEP_MS = 33 * 86_400_000  # a month-long window and then some
DEFAULT_RESERVATION_TIMEOUT = timedelta(minutes=10)
DEFAULT_HEARTBEAT = timedelta(seconds=10)
"""How often every warn or block state is published again with a new issue time: a copied
old record on the signals topic is overwritten within this interval (docs/security.md: Replays)."""
ISSUER = "budgets-worker"


def budget_window(ts: datetime, window: str, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of the budget window holding ``ts``, in UTC, aligned in ``tz``."""
    zone = ZoneInfo(tz)
    local = ts.astimezone(zone)
    if window == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        return start.astimezone(UTC), (start + timedelta(hours=1)).astimezone(UTC)
    day = local.date()
    if window == "day":
        first, after = day, day + timedelta(days=1)
    elif window == "week":
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
    elif window == "month":
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget window {window!r}")
    return midnight(first, zone), midnight(after, zone)


SignalState = Literal["allow", "warn", "block"]
ADJECTIVE = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}


def evaluate(budget: Budget, spend: int) -> tuple[SignalState, int | None, str]:
    """(state, threshold_pct, reason) of ``spend`` against ``budget``."""
    limit = f"{ADJECTIVE[budget.window]} limit {format_usd(budget.limit_nusd)}"
    if spend >= budget.limit_nusd:
        return "block", 100, f"{limit} reached"
    crossed = [p for p in budget.warn_pct if spend * 100 >= budget.limit_nusd * p]
    if crossed:
        pct = max(crossed)
        return "warn", pct, f"{pct}% of the {limit} used"
    return "allow", None, f"within the {limit}"


def slot_of(tenant_id: str, feature: str | None, ts_ms: int) -> SlotKey:
    """The slot holding ``ts_ms`` of a tenant or a tenant's feature."""
    return SlotKey(scope_dim(tenant_id, feature), ts_ms - ts_ms % SLOT_MS)


class BudgetTracker:
    """Spend, reservations and published signal state of one partition's tenants."""

    def __init__(
        self,
        state: State,
        book: BudgetDefinitions,
        *,
        reservation_timeout: timedelta = DEFAULT_RESERVATION_TIMEOUT,
        heartbeat: timedelta = DEFAULT_HEARTBEAT,
    ) -> None:
        self.state = state
        self.book = book
        self.timeout_ms = int(reservation_timeout.total_seconds() * 1000)
        self.heartbeat_ms = int(heartbeat.total_seconds() * 1000)
        self._next_heartbeat_ms = 0
        self.reservations: dict[str, Reservation] = {
            k: RESERVATION.decode_value(v) for k, v in state.items(RESERVATION.prefix)
        }
        for key in list(self.reservations):
            request = RESERVATION.decode_key(key)
            if request.tenant_id is None:
                # written before request ids were scoped by tenant; the value names the tenant
                reservation = self.reservations.pop(key)
                scoped = RESERVATION.encode_key(request._replace(tenant_id=reservation.tenant_id))
                self.reservations[scoped] = reservation
                self.state.delete(key)
                self.state.put(scoped, RESERVATION.encode_value(reservation))
        self._unscoped_settled = holds(state, OLD_SETTLED_REQUEST.prefix)
        self._expiry = [(r.ts_ms, k) for k, r in self.reservations.items()]
        heapq.heapify(self._expiry)
        self.slots: dict[SlotKey, int] = {
            SLOT.decode_key(k): SLOT.decode_value(v) for k, v in state.items(SLOT.prefix)
        }
        self.latest_slot_ms = max((slot.start_ms for slot in self.slots), default=0)
        self._dirty_slots: set[SlotKey] = set()
        self._batch: dict[tuple[str, str, int], int] = {}
        """Spend of the running batch per (tenant, feature, slot start): ``fold`` (at batch
        end, or when the anomaly detectors need the slots) adds it to ``slots``."""
        self._dirty_scopes: set[str] = set()
        self._next_cleanup_ms = 0
        self._rollovers: list[tuple[int, str]] = []
        self._asserting: set[str] = set()  # scopes whose published state is warn or block
        for key, value in state.items(SIGNAL.prefix):
            scope, mark = SIGNAL.decode_key(key), SIGNAL.decode_value(value)
            heapq.heappush(self._rollovers, (mark.end_ms, scope))
            if mark.state != "allow":
                self._asserting.add(scope)

    # -- inputs --------------------------------------------------------------------------

    def on_request(self, event: RequestEvent) -> None:
        request = RequestKey(event.tenant_id, event.request_id, event.attempt)
        if not event.reserved_cost_nusd or self._settled(request):
            return  # nothing reserved, or settled before it arrived (topics are not ordered)
        ts_ms = int(event.ts.timestamp() * 1000)
        reservation = Reservation(event.tenant_id, event.feature, event.reserved_cost_nusd, ts_ms)
        key = RESERVATION.encode_key(request)
        self.reservations[key] = reservation
        self.state.put(key, RESERVATION.encode_value(reservation))
        heapq.heappush(self._expiry, (ts_ms, key))
        self._touch(event.tenant_id, event.feature)

    def _settled(self, request: RequestKey) -> bool:
        if self.state.get(SETTLED_REQUEST.encode_key(request)) is not None:
            return True
        if not self._unscoped_settled:
            return False
        old = OLD_SETTLED_REQUEST.encode_key(request._replace(tenant_id=None))
        return self.state.get(old) is not None  # a mark written before ids were scoped

    def on_usage(self, event: Enriched) -> None:
        request = RequestKey(event.tenant_id, event.request_id, event.attempt)
        ts_ms = int(event.ts.timestamp() * 1000)
        key = RESERVATION.encode_key(request)
        if self.reservations.pop(key, None) is not None:
            self.state.delete(key)
        else:  # settles a request that arrives later; the state forgets it after the timeout
            settled = SETTLED_REQUEST.encode_key(request)
            self.state.put(settled, SETTLED_REQUEST.encode_value(ts_ms))
            self.state.expire_later(settled, ts_ms)
        group = (event.tenant_id, event.feature, ts_ms - ts_ms % SLOT_MS)
        self._batch[group] = self._batch.get(group, 0) + (event.cost_nusd or 0)

    def fold(self) -> None:
        """Add the batch's spend so far (summed per tenant, feature and slot) to the slots."""
        slots = self.slots
        for (tenant_id, feature, slot_ms), cost in self._batch.items():
            if cost:
                for scope_feature in (None, feature):
                    key = slot_of(tenant_id, scope_feature, slot_ms)
                    slots[key] = slots.get(key, 0) + cost
                    self._dirty_slots.add(key)
                self.latest_slot_ms = max(self.latest_slot_ms, slot_ms)
            self._touch(tenant_id, feature)
        self._batch.clear()

    def on_budgets_changed(self, scopes: Iterable[str]) -> None:
        """Re-evaluate changed budgets for the tenants this partition has seen."""
        known = {parse_dim(slot.dim).tenant_id for slot in self.slots} | {
            r.tenant_id for r in self.reservations.values()
        }
        for scope in scopes:
            parts = parse_scope(scope)
            if parts is not None and parts[0] in known:
                self._dirty_scopes.add(scope)
            elif self.state.get(SIGNAL.encode_key(scope)) is not None:
                self._dirty_scopes.add(scope)

    def _touch(self, tenant_id: str, feature: str) -> None:
        self._dirty_scopes.add(budget_scope(tenant_id, None))
        self._dirty_scopes.add(budget_scope(tenant_id, feature))

    # -- evaluation ----------------------------------------------------------------------

    def spend(
        self, budget: Budget, start: datetime, end: datetime, *, reserved: bool = True
    ) -> int:
        """Committed spend in [start, end), with the open reservations unless not
        ``reserved``."""
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        dim = scope_dim(budget.tenant_id, budget.feature)
        slots = self.slots
        last = min(end_ms, self.latest_slot_ms + SLOT_MS)  # later slots are empty
        committed = sum(slots.get(SlotKey(dim, slot), 0) for slot in range(start_ms, last, SLOT_MS))
        if not reserved:
            return committed
        held = sum(
            r.nusd
            for r in self.reservations.values()
            if r.tenant_id == budget.tenant_id
            and (budget.feature is None or r.feature == budget.feature)
            and start_ms <= r.ts_ms < end_ms
        )
        return committed + held

    def end_batch(self, now: datetime) -> list[Signal]:
        now_ms = int(now.timestamp() * 1000)
        self.fold()
        for slot in self._dirty_slots:
            self.state.put(SLOT.encode_key(slot), SLOT.encode_value(self.slots[slot]))
        self._dirty_slots.clear()
        self._expire(now_ms)
        while self._rollovers and self._rollovers[0][0] <= now_ms:
            _, scope = heapq.heappop(self._rollovers)
            self._dirty_scopes.add(scope)
        signals = [
            s
            for s in (self._evaluate(scope, now) for scope in sorted(self._dirty_scopes))
            if s is not None
        ]
        if not self._next_heartbeat_ms:  # the first beat one interval after (re)start:
            self._next_heartbeat_ms = now_ms + self.heartbeat_ms  # what was published stands
        elif now_ms >= self._next_heartbeat_ms:
            self._next_heartbeat_ms = now_ms + self.heartbeat_ms
            beating = sorted(self._asserting - self._dirty_scopes)
            signals += [
                s
                for s in (self._evaluate(scope, now, again=True) for scope in beating)
                if s is not None
            ]
        self._dirty_scopes.clear()
        return signals

    def _evaluate(self, scope: str, now: datetime, *, again: bool = False) -> Signal | None:
        """The scope's signal when its state changed (or, ``again``, its current warn or
        block state re-asserted), with an issue time newer than the last one published."""
        budget = self.book.by_scope.get(scope)
        key = SIGNAL.encode_key(scope)
        text = self.state.get(key)
        last = None if text is None else SIGNAL.decode_value(text)
        last_state = "" if last is None else last.state
        last_issued = (last.issued_ms or 0) if last is not None else 0
        issued_ms = max(int(now.timestamp() * 1000), last_issued + 1)
        issued = datetime.fromtimestamp(issued_ms / 1000, UTC)
        if budget is None:
            if last is None or last_state == "allow":
                return None
            parts = parse_scope(scope)
            self._asserting.discard(scope)
            if parts is None:  # published before names lost '/': no tenant to name
                self.state.delete(key)
                log.warning(
                    "forgetting the signal state of %r, which is not a budget scope of valid names",
                    scope,
                )
                return None
            removed = SignalMark("allow", None, issued_ms, issued_ms)
            self.state.put(key, SIGNAL.encode_value(removed))
            tenant, feature = parts
            return Signal(
                scope=scope,
                tenant_id=tenant,
                feature=feature,
                state="allow",
                reason="budget removed",
                spend_nusd=0,
                limit_nusd=0,
                window_start=now,
                window_end=now,
                issued_at=issued,
                issuer=ISSUER,
            )
        start, end = budget_window(now, budget.window, budget.tz)
        spend = self.spend(budget, start, end)
        state, pct, reason = evaluate(budget, spend)
        end_ms = int(end.timestamp() * 1000)
        unchanged = last is not None and last.same_window_state(state, pct, end_ms)
        if (unchanged and not again) or (state == "allow" and last_state in ("", "allow")):
            return None  # unchanged; an allowed scope stays quiet across windows
        self.state.put(key, SIGNAL.encode_value(SignalMark(state, pct, end_ms, issued_ms)))
        if state == "allow":
            self._asserting.discard(scope)
        else:
            self._asserting.add(scope)
        if not unchanged:
            heapq.heappush(self._rollovers, (end_ms, scope))
        return Signal(
            scope=scope,
            tenant_id=budget.tenant_id,
            feature=budget.feature,
            state=state,
            reason=reason,
            spend_nusd=spend,
            limit_nusd=budget.limit_nusd,
            threshold_pct=pct,
            window_start=start,
            window_end=end,
            issued_at=issued,
            issuer=ISSUER,
        )

    def _expire(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] + self.timeout_ms < now_ms:
            ts_ms, key = heapq.heappop(self._expiry)
            reservation = self.reservations.pop(key, None)
            if reservation is not None and reservation.ts_ms == ts_ms:
                self.state.delete(key)
                self._touch(reservation.tenant_id, reservation.feature)
        self.state.expire(now_ms - self.timeout_ms, SETTLED)
        if now_ms >= self._next_cleanup_ms:  # slots older than a month window: not needed
            self._next_cleanup_ms = now_ms + 3_600_000
            old_settled = OLD_SETTLED_REQUEST.prefix
            self._unscoped_settled = self._unscoped_settled and holds(self.state, old_settled)
            for slot in [s for s in self.slots if s.start_ms + SLOT_KEEP_MS < now_ms]:
                del self.slots[slot]
                self.state.delete(SLOT.encode_key(slot))

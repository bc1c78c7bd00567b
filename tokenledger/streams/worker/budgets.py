"""Budgets: definitions, windows in the budget's timezone, spend, and the signal state machine.

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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from tokenledger.contract.common import format_usd
from tokenledger.contract.messages import Budget, RequestEvent, Signal
from tokenledger.contract.names import budget_scope, error_message, parse_scope
from tokenledger.freshness import Freshness
from tokenledger.signing import Headers, PublicKeyring, Verdict, check
from tokenledger.streams.worker.price import Enriched
from tokenledger.streams.worker.retry_budgets import RetryBudgetConfigs
from tokenledger.streams.worker.state import SETTLED, SETTLED_REQUEST, UNSCOPED, State, holds
from tokenledger.streams.worker.windows import scope_dim

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
    return _midnight(first, zone), _midnight(after, zone)


def _midnight(d: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=zone).astimezone(UTC)


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


_OLD_SETTLED = UNSCOPED[SETTLED_REQUEST]


def slot_key(tenant_id: str, feature: str | None, ts_ms: int) -> str:
    return f"q:{scope_dim(tenant_id, feature)}:{ts_ms - ts_ms % SLOT_MS}"


class BudgetDefinitions:
    """Every budget definition, read from the compacted budgets topic (a global table).

    With public keys only records signed by one of their private keys count (the admin
    CLI's), and per scope only a record newer than the one held: a budget's time is its
    ``updated_at``, a removal's the signed issue time in its headers. A replayed older
    definition or removal is ignored (``replayed``)."""

    def __init__(self, topic: str = "", public_keys: PublicKeyring | None = None) -> None:
        self.by_scope: dict[str, Budget] = {}
        self.invalid = 0
        self.unauthorized = 0
        self.refusals: Counter[str] = Counter()
        """Refused records by reason."""
        self.changed: set[str] = set()
        self.topic = topic
        self.public_keys = public_keys
        self.freshness = Freshness("budget")
        self.retry_budgets = RetryBudgetConfigs()
        """Retry budget definitions: records of the same topic with a kind of their own."""

    @property
    def replayed(self) -> int:
        return self.freshness.replayed

    def verdict(self, key: bytes | None, value: bytes | None, headers: Headers) -> Verdict:
        """Whether a record's signature counts (the migration from HMAC widens this)."""
        return check(self.public_keys, self.topic, key, value, headers)

    def apply(self, key: bytes | None, value: bytes | None, headers: Headers = None) -> None:
        """Apply one record of the budgets topic; with public keys, only signed ones."""
        verdict = self.verdict(key, value, headers)
        if not verdict.ok:
            self.unauthorized += 1
            self.refusals[verdict.reason] += 1
            log.warning(
                "ignoring a budget record for %r (written by something other than "
                "tokenledger budget?): %s",
                key,
                verdict.reason,
            )
            return
        scope = key.decode(errors="replace") if key else ""
        if self.retry_budgets.apply(scope, value, self.freshness, verdict.issued_ms):
            return
        if value is None:
            if verdict.issued_ms is not None and not self.freshness.accept(
                scope, verdict.issued_ms
            ):
                return
            if self.by_scope.pop(scope, None) is not None:
                self.changed.add(scope)
            return
        try:
            budget = Budget.model_validate_json(value)
        except ValidationError as exc:
            self.invalid += 1
            log.warning(
                "ignoring an invalid budget for %r: %s", scope, error_message(exc.errors()[0])
            )
            return
        if not self.freshness.accept(budget.scope, _ms(budget.updated_at)):
            return
        self.by_scope[budget.scope] = budget
        self.changed.add(budget.scope)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    feature: str
    nusd: int
    ts_ms: int

    def encode(self) -> str:
        return f"{self.tenant_id}|{self.feature}|{self.nusd}|{self.ts_ms}"

    @staticmethod
    def decode(value: str) -> Reservation:
        tenant, feature, nusd, ts = value.rsplit("|", 3)
        return Reservation(tenant, feature, int(nusd), int(ts))


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
            k: Reservation.decode(v) for k, v in state.items("r:")
        }
        for key in [k for k in self.reservations if " " not in k]:
            # written before request ids were scoped by tenant; the value names the tenant
            reservation = self.reservations.pop(key)
            scoped = f"r:{reservation.tenant_id} {key[2:]}"
            self.reservations[scoped] = reservation
            self.state.delete(key)
            self.state.put(scoped, reservation.encode())
        self._unscoped_settled = holds(state, _OLD_SETTLED)
        self._expiry = [(r.ts_ms, k) for k, r in self.reservations.items()]
        heapq.heapify(self._expiry)
        self.slots: dict[str, int] = {k: int(v) for k, v in state.items("q:")}
        self.latest_slot_ms = max((int(k.rsplit(":", 1)[1]) for k in self.slots), default=0)
        self._dirty_slots: set[str] = set()
        self._batch: dict[tuple[str, str, int], int] = {}
        """Spend of the running batch per (tenant, feature, slot start): ``fold`` (at batch
        end, or when the anomaly detectors need the slots) adds it to ``slots``."""
        self._dirty_scopes: set[str] = set()
        self._next_cleanup_ms = 0
        self._rollovers: list[tuple[int, str]] = []
        self._asserting: set[str] = set()  # scopes whose published state is warn or block
        for key, value in state.items("g:"):
            heapq.heappush(self._rollovers, (int(value.split("|")[2]), key[2:]))
            if not value.startswith("allow|"):
                self._asserting.add(key[2:])

    # -- inputs --------------------------------------------------------------------------

    def on_request(self, event: RequestEvent) -> None:
        rid = f"{event.tenant_id} {event.request_id}:{event.attempt}"  # ids hold no space
        if not event.reserved_cost_nusd or self._settled(rid):
            return  # nothing reserved, or settled before it arrived (topics are not ordered)
        ts_ms = int(event.ts.timestamp() * 1000)
        reservation = Reservation(event.tenant_id, event.feature, event.reserved_cost_nusd, ts_ms)
        self.reservations["r:" + rid] = reservation
        self.state.put("r:" + rid, reservation.encode())
        heapq.heappush(self._expiry, (ts_ms, "r:" + rid))
        self._touch(event.tenant_id, event.feature)

    def _settled(self, rid: str) -> bool:
        if self.state.get(SETTLED_REQUEST + rid) is not None:
            return True
        unscoped = self._unscoped_settled  # a mark written before request ids were scoped
        return unscoped and self.state.get(_OLD_SETTLED + rid.split(" ", 1)[1]) is not None

    def on_usage(self, event: Enriched) -> None:
        rid = f"{event.tenant_id} {event.request_id}:{event.attempt}"
        ts_ms = int(event.ts.timestamp() * 1000)
        if self.reservations.pop("r:" + rid, None) is not None:
            self.state.delete("r:" + rid)
        else:  # settles a request that arrives later; the state forgets it after the timeout
            self.state.put(SETTLED_REQUEST + rid, str(ts_ms))
            self.state.expire_later(SETTLED_REQUEST + rid, ts_ms)
        group = (event.tenant_id, event.feature, ts_ms - ts_ms % SLOT_MS)
        self._batch[group] = self._batch.get(group, 0) + (event.cost_nusd or 0)

    def fold(self) -> None:
        """Add the batch's spend so far (summed per tenant, feature and slot) to the slots."""
        slots = self.slots
        for (tenant_id, feature, slot_ms), cost in self._batch.items():
            if cost:
                for scope_feature in (None, feature):
                    key = slot_key(tenant_id, scope_feature, slot_ms)
                    slots[key] = slots.get(key, 0) + cost
                    self._dirty_slots.add(key)
                self.latest_slot_ms = max(self.latest_slot_ms, slot_ms)
            self._touch(tenant_id, feature)
        self._batch.clear()

    def on_budgets_changed(self, scopes: Iterable[str]) -> None:
        """Re-evaluate changed budgets for the tenants this partition has seen."""
        known = {key.split(":")[1].split("=", 1)[1].split("|")[0] for key in self.slots} | {
            r.tenant_id for r in self.reservations.values()
        }
        for scope in scopes:
            parts = parse_scope(scope)
            if parts is not None and parts[0] in known:
                self._dirty_scopes.add(scope)
            elif self.state.get("g:" + scope) is not None:
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
        committed = sum(slots.get(f"q:{dim}:{slot}", 0) for slot in range(start_ms, last, SLOT_MS))
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
        for key in self._dirty_slots:
            self.state.put(key, str(self.slots[key]))
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
        last = self.state.get("g:" + scope)
        last_state, _, rest = (last or "").partition("|")
        last_issued = int(rest.split("|")[2]) if rest.count("|") >= 2 else 0
        issued_ms = max(int(now.timestamp() * 1000), last_issued + 1)
        issued = datetime.fromtimestamp(issued_ms / 1000, UTC)
        if budget is None:
            if last is None or last_state == "allow":
                return None
            parts = parse_scope(scope)
            self._asserting.discard(scope)
            if parts is None:  # published before names lost '/': no tenant to name
                self.state.delete("g:" + scope)
                log.warning(
                    "forgetting the signal state of %r, which is not a budget scope of valid names",
                    scope,
                )
                return None
            self.state.put("g:" + scope, f"allow||{issued_ms}|{issued_ms}")
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
        current = f"{state}|{pct or ''}|{end_ms}"
        unchanged = last is not None and last.startswith(current + "|") or current == last
        if (unchanged and not again) or (state == "allow" and last_state in ("", "allow")):
            return None  # unchanged; an allowed scope stays quiet across windows
        self.state.put("g:" + scope, f"{current}|{issued_ms}")
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
            self._unscoped_settled = self._unscoped_settled and holds(self.state, _OLD_SETTLED)
            for key in [k for k in self.slots if int(k.rsplit(":", 1)[1]) + SLOT_KEEP_MS < now_ms]:
                del self.slots[key]
                self.state.delete(key)

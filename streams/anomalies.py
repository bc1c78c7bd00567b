"""Anomaly detectors and the alert state machine, run inside the usage worker.

Every detector works in event time on one-minute buckets kept per scope (tenant, tenant x
feature, tenant x route) in the worker's changelog state, so a replay or a takeover
reproduces them. A minute is evaluated when the partition's watermark passes its end; the
spend-rate detector also looks at the open minute, so a runaway is caught while it runs.

Detectors (``DETECTORS``):

- ``spend_rate`` (tenant, tenant x feature): a minute's spend, without its single largest
  call, against the largest of: the median minute of the last 30, the previous hour's mean
  minute, and yesterday's same and next hour (daily seasonality: an ordinary morning ramp
  happened yesterday too). Fires at ``spend_ratio`` times that and at least
  ``spend_min_excess_nusd`` above it, with ``spend_min_events`` calls in the minute.
- ``retry_storm`` (tenant): share of duplicate generations over 5 minutes against the hour
  before.
- ``model_mix`` (tenant x route): mean price level of the models used on a route (list cost
  against the route's reference model on the same tokens) over 5 minutes against the hour
  before: a switch to an expensive model.
- ``context_growth`` (tenant x feature): share of calls with token-budget violations over 5
  minutes against the hour before: a prompt regression growing context.
- ``budget_burn`` (each budget): the spend forecast for the budget's window (yesterday's
  profile scaled to today when there is one, else the average rate so far) reaches the limit
  before the window ends.

An incident is one alert: ``firing`` once, then ``resolved`` after ``resolve_after`` quiet
minutes measured against the expectation frozen when it fired (an incident does not become
normal by lasting), then a ``cooldown`` before the same detector may fire on that scope
again. The fingerprint hashes detector, scope and start: the same on every worker and replay.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from schemas.common import format_usd
from schemas.messages import Alert, Budget, EnrichedUsage, budget_scope
from streams.budgets import ADJECTIVE, BudgetTracker, budget_window, parse_scope
from streams.state import ChangelogState
from streams.validate import Output
from streams.windows import SpendWindows, scope_dim

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
KEEP_MINUTES = 90
SPEND_UNIT = "nusd/2min"
DETECTORS = ("spend_rate", "retry_storm", "model_mix", "context_growth", "budget_burn")
COST, EVENTS, TOP1, TOP2, AUX1, AUX2 = range(6)
"""Bucket fields (TOP1/TOP2: the two largest calls). AUX1/AUX2: t= duplicate generations/-; tf= violating calls/input tokens;
tr= priced calls/sum of price levels (permille of the reference model)."""


@dataclass(frozen=True)
class DetectorConfig:
    spend_ratio: float = 4.0
    spend_min_excess_nusd: int = 200_000_000
    spend_min_events: int = 10
    short_minutes: int = 5
    baseline_minutes: int = 60
    share_min_events: int = 30
    retry_share_pct: int = 20
    retry_ratio: float = 3.0
    mix_ratio: float = 3.0
    mix_min_events: int = 20
    violation_share_pct: int = 20
    violation_ratio: float = 4.0
    burn_min_elapsed_minutes: int = 60
    burn_min_spent_pct: int = 5
    burn_fire_pct: int = 110
    """budget_burn fires at a forecast of this share of the limit, resolves below 100%."""
    resolve_after: int = 5
    cooldown_minutes: int = 30
    max_catch_up_minutes: int = 180


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


@dataclass
class Incident:
    start_ms: int
    expected: int
    fingerprint: str
    severity: str
    summary: str
    quiet: int = 0
    last: Observation | None = field(default=None, compare=False)

    def encode(self) -> str:
        return f"firing|{self.start_ms}|{self.expected}|{self.quiet}|{self.fingerprint}|{self.severity}"


def fingerprint(detector: str, scope: str, start_ms: int) -> str:
    return hashlib.sha256(f"{detector}\x00{scope}\x00{start_ms}".encode()).hexdigest()[:32]


def human_scope(scope: str) -> tuple[str, str, str | None]:
    """(alert scope, tenant, feature) of an internal scope ``t=``/``tf=``/``tr=`` or a budget."""
    if scope.startswith("tenant/"):
        return (scope, *parse_scope(scope))
    kind, _, rest = scope.partition("=")
    tenant, _, other = rest.partition("|")
    if kind == "t":
        return f"tenant/{tenant}", tenant, None
    if kind == "tf":
        return f"tenant/{tenant}/feature/{other}", tenant, other
    return f"tenant/{tenant}/route/{other or '-'}", tenant, None


class Buckets:
    """Per-minute counters per scope, persisted under ``a:b:<scope>:<minute ms>``."""

    def __init__(self, state: ChangelogState) -> None:
        self.state = state
        self.data: dict[tuple[str, int], list[int]] = {}
        self.active: dict[int, set[str]] = {}
        for key, value in state.items("a:b:"):
            scope, minute = key[4:].rsplit(":", 1)
            self.data[(scope, int(minute))] = [int(x) for x in value.split(",")]
            self.active.setdefault(int(minute), set()).add(scope)
        self._dirty: set[tuple[str, int]] = set()

    def add(self, scope: str, minute: int, cost: int, aux1: int = 0, aux2: int = 0) -> None:
        key = (scope, minute)
        entry = self.data.get(key)
        if entry is None:
            entry = self.data[key] = [0, 0, 0, 0, 0, 0]
            self.active.setdefault(minute, set()).add(scope)
        entry[COST] += cost
        entry[EVENTS] += 1
        if cost > entry[TOP2]:
            if cost > entry[TOP1]:
                entry[TOP2] = entry[TOP1]
                entry[TOP1] = cost
            else:
                entry[TOP2] = cost
        entry[AUX1] += aux1
        entry[AUX2] += aux2
        self._dirty.add(key)

    def get(self, scope: str, minute: int) -> list[int] | None:
        return self.data.get((scope, minute))

    def total(self, scope: str, first: int, last: int) -> list[int]:
        """Sums of COST, EVENTS, AUX1 and AUX2 over the minutes [first, last]."""
        out = [0, 0, 0, 0, 0, 0]
        for minute in range(first, last + 1, MINUTE_MS):
            entry = self.data.get((scope, minute))
            if entry is not None:
                out[COST] += entry[COST]
                out[EVENTS] += entry[EVENTS]
                out[AUX1] += entry[AUX1]
                out[AUX2] += entry[AUX2]
        return out

    def flush(self) -> None:
        for scope, minute in self._dirty:
            entry = self.data[(scope, minute)]
            self.state.put(f"a:b:{scope}:{minute}", ",".join(map(str, entry)))
        self._dirty.clear()

    def expire(self, before_ms: int) -> None:
        for minute in [m for m in self.active if m < before_ms]:
            for scope in self.active.pop(minute):
                self.data.pop((scope, minute), None)
                self._dirty.discard((scope, minute))
                self.state.delete(f"a:b:{scope}:{minute}")


def _feature_first(scope: str) -> tuple[int, str]:
    """Feature scopes before tenant scopes: a spend incident names the feature when it can."""
    return (0 if scope.startswith("tf=") else 1, scope)


def _median(values: list[int]) -> int:
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) // 2


def _minute_label(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


class Detectors:
    """The detectors over one partition's buckets and spend windows (pure reads)."""

    def __init__(self, buckets: Buckets, windows: SpendWindows, config: DetectorConfig) -> None:
        self.b = buckets
        self.windows = windows
        self.cfg = config

    def hour_spend(self, scope: str, hour_ms: int) -> int:
        entry = self.windows.totals.get(f"w:hour:{scope}:{hour_ms}")
        return entry[0] if entry else 0

    # -- spend rate ----------------------------------------------------------------------

    def spend_expected(self, scope: str, minute: int) -> tuple[int, bool]:
        """(expected nano-USD per minute, enough history to judge)."""
        recent = [self.b.get(scope, minute - i * MINUTE_MS) for i in range(1, 31)]
        with_data = [e for e in recent if e is not None]
        median = _median([e[COST] for e in with_data] + [0] * (30 - len(with_data)))
        hour = minute - minute % HOUR_MS
        previous = self.hour_spend(scope, hour - HOUR_MS) // 60
        yesterday = max(self.hour_spend(scope, hour - DAY_MS),
                        self.hour_spend(scope, hour - DAY_MS + HOUR_MS)) // 60  # fmt: skip
        # judged only once the scope has been active for 20 minutes (or was yesterday)
        history = any(e is not None for e in recent[19:]) and len(with_data) >= 5 or yesterday > 0
        return max(median, previous, yesterday), history

    def spend_is_anomalous(self, observed: int, expected: int) -> bool:
        return (observed >= self.cfg.spend_ratio * expected
                and observed - expected >= self.cfg.spend_min_excess_nusd)  # fmt: skip

    def spend_rate(self, scope: str, minute: int) -> Observation | None:
        """Spend in the two minutes ending with ``minute`` (which may still be open) without
        its two largest calls (a pasted book is not a runaway), against twice the expected
        minute."""
        start, end = minute - MINUTE_MS, minute + MINUTE_MS
        events = spent = 0
        tops: list[int] = []
        for m in (start, minute):
            entry = self.b.get(scope, m)
            if entry is not None:
                spent += entry[COST]
                events += entry[EVENTS]
                tops += entry[TOP1:TOP2 + 1]  # fmt: skip
        observed = spent - sum(sorted(tops)[-2:])
        if observed < self.cfg.spend_min_excess_nusd:  # cheap exit: cannot fire
            return Observation(observed, 0, SPEND_UNIT, False, start, end)
        per_minute, history = self.spend_expected(scope, minute)
        expected = 2 * per_minute
        volume_ok = history and events >= self.cfg.spend_min_events
        where, _, _ = human_scope(scope)
        summary = lambda: (f"{where} spent {format_usd(spent)} in the 2 minutes to "
                   f"{_minute_label(end)} UTC, about {format_usd(expected)} expected")  # fmt: skip
        return Observation(observed, expected, SPEND_UNIT, volume_ok, start, end, summary)

    # -- share detectors -----------------------------------------------------------------

    def _short(self, scope: str, minute: int, minutes: int = 0) -> tuple[list[int], int, int]:
        """Totals of the short window ending with ``minute``, its start and end."""
        first = minute - ((minutes or self.cfg.short_minutes) - 1) * MINUTE_MS
        return self.b.total(scope, first, minute), first, minute + MINUTE_MS

    def _base(self, scope: str, short_first: int) -> list[int]:
        """Totals of the baseline: the ``baseline_minutes`` before the short window."""
        return self.b.total(scope, short_first - self.cfg.baseline_minutes * MINUTE_MS,
                            short_first - MINUTE_MS)  # fmt: skip

    def share(self, scope: str, minute: int, floor_pct: int, what: str) -> Observation | None:
        """Share (permille) of calls counted in AUX1 over the short window; the hour before
        is read only when the short window is over ``floor_pct`` (it cannot fire otherwise)."""
        unit = "permille"
        recent, start, end = self._short(scope, minute)
        if recent[AUX1] == 0:  # nothing to count lately: cannot fire, and is not firing
            return Observation(0, 0, unit, False, start, end)
        for minutes in (
            self.cfg.short_minutes,
            3 * self.cfg.short_minutes,
            6 * self.cfg.short_minutes,
        ):  # widen while the volume is too low
            short, start, end = self._short(scope, minute, minutes)
            if short[EVENTS] >= self.cfg.share_min_events:
                break
        if short[EVENTS] == 0:
            return Observation(0, 0, unit, False, start, end)
        observed = short[AUX1] * 1000 // short[EVENTS]
        if short[EVENTS] < self.cfg.share_min_events or observed < floor_pct * 10:
            return Observation(observed, 0, unit, False, start, end)
        base = self._base(scope, start)
        expected = base[AUX1] * 1000 // base[EVENTS] if base[EVENTS] else 0
        volume_ok = base[EVENTS] > 0
        where, _, _ = human_scope(scope)
        summary = lambda: (f"{observed / 10:.1f}% of calls were {what} on {where} in the "
                   f"{(end - start) // MINUTE_MS} minutes to {_minute_label(end)} UTC, "
                   f"against {expected / 10:.1f}% in the hour before")  # fmt: skip
        return Observation(observed, expected, unit, volume_ok, start, end, summary)

    def retry_is_anomalous(self, observed: int, expected: int) -> bool:
        return (observed >= self.cfg.retry_share_pct * 10
                and observed >= self.cfg.retry_ratio * max(expected, 1))  # fmt: skip

    def violation_is_anomalous(self, observed: int, expected: int) -> bool:
        return (observed >= self.cfg.violation_share_pct * 10
                and observed >= self.cfg.violation_ratio * max(expected, 1))  # fmt: skip

    def model_mix(self, scope: str, minute: int) -> Observation | None:
        short, start, end = self._short(scope, minute)
        if short[AUX1] == 0:
            return Observation(0, 0, "permille", False, start, end)
        observed = short[AUX2] // short[AUX1]
        if short[AUX1] < self.cfg.mix_min_events:
            return Observation(observed, 0, "permille", False, start, end)
        base = self._base(scope, start)
        expected = base[AUX2] // base[AUX1] if base[AUX1] else 0
        volume_ok = base[AUX1] >= self.cfg.mix_min_events
        where, _, _ = human_scope(scope)
        summary = lambda: (f"models on {where} cost {observed / 1000:.2f}x the route's reference model "
                   f"in the {self.cfg.short_minutes} minutes to {_minute_label(end)} UTC, "
                   f"against {expected / 1000:.2f}x in the hour before")  # fmt: skip
        return Observation(observed, expected, "permille", volume_ok, start, end, summary)

    def mix_is_anomalous(self, observed: int, expected: int) -> bool:
        return expected > 0 and observed >= self.cfg.mix_ratio * expected

    # -- budget burn ---------------------------------------------------------------------

    def budget_burn(self, budget: Budget, spent: int, minute: int) -> Observation | None:
        at_ms = minute + MINUTE_MS
        at = datetime.fromtimestamp(at_ms / 1000, UTC)
        start, end = budget_window(at, budget.window, budget.tz)
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        elapsed, remaining = at_ms - start_ms, end_ms - at_ms
        volume_ok = (elapsed >= self.cfg.burn_min_elapsed_minutes * MINUTE_MS
                     and spent * 100 >= self.cfg.burn_min_spent_pct * budget.limit_nusd)  # fmt: skip
        dim = scope_dim(budget.tenant_id, budget.feature)
        # The lower of two forecasts, so that neither a busy hour nor an odd yesterday is
        # extrapolated alone: the last hour's rate, and the day so far scaled by yesterday's
        # profile (or, without one, the average rate so far).
        last_hour = self.b.total(dim, minute - HOUR_MS + MINUTE_MS, minute)[COST]
        recent = spent + last_hour * remaining // HOUR_MS
        so_far = spent + spent * remaining // max(elapsed, 1)
        if budget.window == "day":
            before = self._hours(dim, start_ms - DAY_MS, at_ms - DAY_MS)
            rest = self._hours(dim, at_ms - DAY_MS, end_ms - DAY_MS)
            if before > 0 and rest > 0:
                so_far = spent + rest * spent // before
        forecast = min(recent, so_far)
        summary = lambda: (  # noqa: E731
            f"{budget.scope} is forecast to spend {format_usd(forecast)} of its "
            f"{ADJECTIVE[budget.window]} limit {format_usd(budget.limit_nusd)} by "
            f"{end.strftime('%Y-%m-%d %H:%M')} UTC ({format_usd(spent)} spent so far)"
        )
        # the evidence window: from this minute (when it fires) to the budget window's end
        return Observation(forecast, budget.limit_nusd, "nusd/window", volume_ok, minute,
                           end_ms, summary)  # fmt: skip

    def _hours(self, dim: str, first_ms: int, end_ms: int) -> int:
        """Spend in whole UTC hours starting in [first_ms, end_ms) (budget windows align
        to 15 minutes; the forecast only needs the profile's shape)."""
        hour = first_ms - first_ms % HOUR_MS
        total = 0
        while hour < end_ms:
            total += self.hour_spend(dim, hour)
            hour += HOUR_MS
        return total


class AnomalyTask:
    """Buckets, detectors and incidents of one partition; emits alerts at batch end."""

    def __init__(
        self,
        state: ChangelogState,
        windows: SpendWindows,
        alerts_topic: str,
        *,
        budgets: BudgetTracker | None = None,
        config: DetectorConfig | None = None,
    ) -> None:
        self.state = state
        self.cfg = config or DetectorConfig()
        self.buckets = Buckets(state)
        self.detectors = Detectors(self.buckets, windows, self.cfg)
        self.budgets = budgets
        self.topic = alerts_topic
        self.evaluated_to = int(state.get("a:e") or 0)
        self.incidents: dict[tuple[str, str], Incident] = {}
        self.cooling: dict[tuple[str, str], int] = {}
        for key, value in state.items("a:f:"):
            detector, scope = key[4:].split(":", 1)
            parts = value.split("|")
            if parts[0] == "firing":
                self.incidents[(detector, scope)] = Incident(
                    int(parts[1]), int(parts[2]), parts[4], parts[5], "", int(parts[3])
                )
            else:
                self.cooling[(detector, scope)] = int(parts[1])
        self._touched: set[str] = set()
        self.counters: Counter[str] = Counter()
        self.now = datetime.now(UTC)

    # -- input ---------------------------------------------------------------------------

    def observe(self, event: EnrichedUsage) -> None:
        if event.late:
            return
        ts_ms = int(event.ts.timestamp() * 1000)
        minute = ts_ms - ts_ms % MINUTE_MS
        cost = event.cost_nusd or 0
        tenant = event.tenant_id
        t, tf, tr = f"t={tenant}", f"tf={tenant}|{event.feature}", f"tr={tenant}|{event.route}"
        add = self.buckets.add
        add(t, minute, cost, 1 if event.duplicate_generation else 0)
        add(tf, minute, cost, 1 if event.token_budget_violations else 0, event.input_tokens)
        counterfactual = event.counterfactual_cost_nusd
        if event.cache == "none" and event.list_cost_nusd is not None and counterfactual:
            add(tr, minute, 0, 1, event.list_cost_nusd * 1000 // counterfactual)
        else:
            add(tr, minute, 0)
        self._touched.add(t)
        self._touched.add(tf)

    # -- evaluation ----------------------------------------------------------------------

    def end_batch(self, watermark_ms: int, now: datetime) -> list[Output]:
        self.now = now
        alerts: list[Alert] = []
        closed_to = watermark_ms - watermark_ms % MINUTE_MS  # minutes before this are closed
        if self.evaluated_to == 0:
            first = min(self.buckets.active, default=closed_to)
        else:
            first = max(self.evaluated_to, closed_to - self.cfg.max_catch_up_minutes * MINUTE_MS)
        for minute in range(first, closed_to, MINUTE_MS):
            alerts.extend(self._evaluate_minute(minute))
        if closed_to > self.evaluated_to:
            self.evaluated_to = closed_to
            self.state.put("a:e", str(closed_to))
        for scope in sorted(self._touched, key=_feature_first):  # the open minute: a runaway
            key = ("spend_rate", scope)
            if key in self.incidents:
                continue
            obs = self.detectors.spend_rate(scope, closed_to)
            if (
                obs is not None
                and obs.volume_ok
                and self.detectors.spend_is_anomalous(obs.observed, obs.expected)
            ):
                alerts.extend(self._step("spend_rate", scope, obs, closed_to, fire_only=True))
        self._touched.clear()
        self.buckets.flush()
        self.buckets.expire(closed_to - KEEP_MINUTES * MINUTE_MS)
        self.counters.update(f"alert.{a.status}" for a in alerts)
        return [Output(self.topic, a.fingerprint.encode(), a.model_dump_json().encode())
                for a in alerts]  # fmt: skip

    def _evaluate_minute(self, minute: int) -> Iterable[Alert]:
        scopes = set(self.buckets.active.get(minute, ()))
        scopes.update(scope for _, scope in self.incidents)
        out: list[Alert] = []
        d = self.detectors
        for scope in sorted(scopes, key=_feature_first):
            kind = scope.split("=", 1)[0]
            if kind in ("t", "tf"):
                out.extend(self._step("spend_rate", scope, d.spend_rate(scope, minute), minute))
            if kind == "t":
                obs = d.share(
                    scope, minute, self.cfg.retry_share_pct, "duplicate generations (retries)"
                )
                out.extend(self._step("retry_storm", scope, obs, minute))
            elif kind == "tf":
                obs = d.share(scope, minute, self.cfg.violation_share_pct, "over a token budget")
                out.extend(self._step("context_growth", scope, obs, minute))
            elif kind == "tr":
                out.extend(self._step("model_mix", scope, d.model_mix(scope, minute), minute))
        if self.budgets is not None:
            out.extend(self._evaluate_budgets(minute, scopes))
        return out

    def _evaluate_budgets(self, minute: int, scopes: set[str]) -> Iterable[Alert]:
        if self.budgets is None:
            return []
        book = self.budgets.book
        wanted: set[str] = set()
        for scope in scopes:
            if scope.startswith("t="):
                wanted.add(budget_scope(scope[2:], None))
            elif scope.startswith("tf="):
                tenant, feature = scope[3:].split("|", 1)
                wanted.add(budget_scope(tenant, feature))
            elif scope.startswith("tenant/"):
                wanted.add(scope)
        out: list[Alert] = []
        for scope in sorted(wanted):
            budget = book.by_scope.get(scope)
            if budget is None:
                if ("budget_burn", scope) in self.incidents:
                    out.extend(self._step("budget_burn", scope, None, minute))
                continue
            at = datetime.fromtimestamp((minute + MINUTE_MS) / 1000, UTC)
            start, end = budget_window(at, budget.window, budget.tz)
            spent = self.budgets.spend(budget, start, end)
            obs = self.detectors.budget_burn(budget, spent, minute)
            out.extend(self._step("budget_burn", scope, obs, minute))
        return out

    def _is_anomalous(self, detector: str, observed: int, expected: int) -> bool:
        d = self.detectors
        if detector == "spend_rate":
            return d.spend_is_anomalous(observed, expected)
        if detector == "retry_storm":
            return d.retry_is_anomalous(observed, expected)
        if detector == "context_growth":
            return d.violation_is_anomalous(observed, expected)
        if detector == "model_mix":
            return d.mix_is_anomalous(observed, expected)
        return observed * 100 >= expected * self.cfg.burn_fire_pct  # budget_burn

    def _step(
        self, detector: str, scope: str, obs: Observation | None, minute: int,
        *, fire_only: bool = False,
    ) -> list[Alert]:  # fmt: skip
        key = (detector, scope)
        incident = self.incidents.get(key)
        if incident is None:
            if obs is None or not obs.volume_ok:
                return []
            if not self._is_anomalous(detector, obs.observed, obs.expected):
                return []
            if detector == "spend_rate" and self._tenant_spend_firing(scope, minute):
                return []  # one spend incident per tenant: its tenant or feature scope
            until = self.cooling.get(key)
            if until is not None:
                if minute < until:
                    return []
                del self.cooling[key]
            severity = "critical" if detector in ("spend_rate", "budget_burn") else "warning"
            incident = Incident(obs.start_ms, obs.expected, fingerprint(detector, scope, minute),
                                severity, obs.summary(), last=obs)  # fmt: skip
            self.incidents[key] = incident
            self.state.put(f"a:f:{detector}:{scope}", incident.encode())
            return [self._alert(detector, scope, incident, obs, "firing")]
        if fire_only:
            return []
        if detector == "budget_burn":  # against the current limit, once the window has data
            bad = obs is not None and obs.volume_ok and obs.observed >= obs.expected
        else:  # against the expectation frozen when it fired
            bad = obs is not None and self._is_anomalous(detector, obs.observed, incident.expected)
        incident.quiet = 0 if bad else incident.quiet + 1
        if obs is not None:
            incident.last = obs
        if incident.quiet < self.cfg.resolve_after:
            self.state.put(f"a:f:{detector}:{scope}", incident.encode())
            return []
        del self.incidents[key]
        until = minute + MINUTE_MS + self.cfg.cooldown_minutes * MINUTE_MS
        self.cooling[key] = until
        self.state.put(f"a:f:{detector}:{scope}", f"cool|{until}")
        last = incident.last or Observation(0, incident.expected, "", True, minute,
                                            minute + MINUTE_MS)  # fmt: skip
        text = (f"resolved: {detector} on {human_scope(scope)[0]} back to normal for "
                f"{self.cfg.resolve_after} minutes")  # fmt: skip
        last = replace(last, summary=lambda: text)
        return [
            self._alert(detector, scope, incident, last, "resolved", ends_ms=minute + MINUTE_MS)
        ]

    def _tenant_spend_firing(self, scope: str, minute: int) -> bool:
        """A spend incident of the tenant (any of its scopes) is firing or cooling down."""
        tenant = scope.split("=", 1)[1].split("|", 1)[0]

        def mine(d: str, s: str) -> bool:
            return d == "spend_rate" and s.split("=", 1)[1].split("|", 1)[0] == tenant

        return any(mine(d, s) for d, s in self.incidents) or any(
            mine(d, s) and minute < until for (d, s), until in self.cooling.items()
        )

    def _alert(
        self, detector: str, scope: str, incident: Incident, obs: Observation, status: str,
        ends_ms: int | None = None,
    ) -> Alert:  # fmt: skip
        where, tenant, feature = human_scope(scope)

        def at(ms: int) -> datetime:
            return datetime.fromtimestamp(ms / 1000, UTC)

        summary = obs.summary() or f"{detector} on {where}"
        return Alert.model_validate({
            "fingerprint": incident.fingerprint, "detector": detector,
            "severity": incident.severity, "status": status, "scope": where,
            "tenant_id": tenant, "feature": feature, "summary": summary[:1000],
            "evidence": {"observed": obs.observed, "expected": obs.expected,
                         "unit": obs.unit or SPEND_UNIT, "window_start": at(obs.start_ms),
                         "window_end": at(obs.end_ms)},
            "starts_at": at(incident.start_ms),
            "ends_at": at(ends_ms) if ends_ms is not None else None,
            "issued_at": self.now,
        })  # fmt: skip

"""The anomaly task of one partition: observe enriched usage, judge each minute once the
partition's watermark has passed it, and emit alerts.

Judging happens on event-time ticks, never at batch ends: the usage task calls ``tick``
just before an event moves the watermark into a later minute, so every closed minute is
judged on exactly the events that came before that one, in the partition's order. Batch
sizes, poll timing, the worker's speed, restarts and partition hand-overs therefore change
no judgement; the batch only decides when the alerts are written (with the state, in the
batch's transaction)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from tokenledger.contract.messages import Alert
from tokenledger.contract.names import budget_scope, parse_scope
from tokenledger.streams.records import Output
from tokenledger.streams.worker.anomalies.buckets import (
    AUX1,
    AUX2,
    DAY_MS,
    EVENTS,
    KEEP_MINUTES,
    MINUTE_MS,
    Buckets,
    feature_first,
    keep_top_two,
)
from tokenledger.streams.worker.anomalies.config import DetectorConfig
from tokenledger.streams.worker.anomalies.detectors import Detectors
from tokenledger.streams.worker.anomalies.incidents import Incidents
from tokenledger.streams.worker.anomalies.levels import Levels
from tokenledger.streams.worker.anomalies.observation import Observation
from tokenledger.streams.worker.budgets import BudgetTracker, budget_window
from tokenledger.streams.worker.price import Enriched
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.state_keys import (
    EVALUATED,
    FEATURE,
    ROUTE,
    TENANT,
    dim_kind,
    feature_dim,
    model_dim,
    parse_dim,
    route_dim,
    tenant_dim,
)
from tokenledger.streams.worker.windows import SpendWindows


class AnomalyTask:
    """Buckets, detectors and incidents of one partition; judges minutes on ticks."""

    def __init__(
        self,
        state: State,
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
        evaluated = state.get(EVALUATED.encode_key(None))
        self.evaluated_to = 0 if evaluated is None else EVALUATED.decode_value(evaluated)
        self.incidents = Incidents(state, self.cfg, self._is_anomalous)
        self.levels = Levels(state, self.cfg.level_half_life_minutes)
        self._day = -1
        self._seen: set[tuple[str, str]] = set()
        self._judged: set[tuple[str, str]] = set()
        self._batch: dict[tuple[int, str, str, str, str], list[int]] = {}
        self._alerts: list[Alert] = []
        self.counters: Counter[str] = Counter()

    # -- input ---------------------------------------------------------------------------

    def observe(self, event: Enriched) -> None:
        """Count one call: summed per (minute, tenant, feature, model, route), folded into
        the scopes' buckets at the next tick or batch end."""
        if event.late:
            return
        ts_ms = int(event.ts.timestamp() * 1000)
        group = (
            ts_ms - ts_ms % MINUTE_MS,
            event.tenant_id,
            event.feature,
            event.model,
            event.route,
        )
        g = self._batch.get(group)
        if g is None:
            g = self._batch[group] = [0] * 10
        cost = event.cost_nusd or 0
        g[0] += cost
        g[1] += 1
        keep_top_two(g, 2, 3, cost)  # the group's two largest calls
        if event.duplicate_generation:
            g[4] += 1
            g[5] += cost
        if event.token_budget_violations:
            g[6] += 1
        g[7] += event.input_tokens
        counterfactual = event.counterfactual_cost_nusd
        if event.cache == "none" and event.list_cost_nusd is not None and counterfactual:
            g[8] += 1
            g[9] += event.list_cost_nusd * 1000 // counterfactual

    def _fold(self) -> None:
        """The sums so far into the buckets of the tenant (aux: duplicate generations and
        their cost), tenant x model, tenant x feature (violating calls, input tokens) and
        tenant x route (priced calls, price levels)."""
        merge = self.buckets.merge
        for (minute, tenant, feature, model, route), g in self._batch.items():
            cost, events, tops = g[0], g[1], (g[2], g[3])
            merge(tenant_dim(tenant), minute, cost, events, tops, g[4], g[5])
            merge(model_dim(tenant, model), minute, cost, events, tops, 0, 0)
            merge(feature_dim(tenant, feature), minute, cost, events, tops, g[6], g[7])
            merge(route_dim(tenant, route), minute, cost, events, tops, g[8], g[9])
        self._batch.clear()

    # -- evaluation ----------------------------------------------------------------------

    def tick(self, watermark_ms: int) -> None:
        """The watermark moves to ``watermark_ms``: judge every minute that closes (up to
        ``max_catch_up_minutes`` of them after a gap), on what was observed before."""
        self._fold()
        if self.budgets is not None:
            self.budgets.fold()
        closed_to = watermark_ms - watermark_ms % MINUTE_MS  # minutes before this are closed
        if closed_to <= self.evaluated_to:
            return
        if self.evaluated_to == 0:
            first = min(self.buckets.active, default=closed_to)
        else:
            first = max(self.evaluated_to, closed_to - self.cfg.max_catch_up_minutes * MINUTE_MS)
        for minute in range(first, closed_to, MINUTE_MS):
            self._alerts.extend(self._evaluate_minute(minute))
        self.evaluated_to = closed_to
        self.state.put(EVALUATED.encode_key(None), EVALUATED.encode_value(closed_to))
        self.buckets.expire(closed_to - KEEP_MINUTES * MINUTE_MS)
        self.levels.expire(closed_to - 7 * DAY_MS)

    def end_batch(self) -> list[Output]:
        """The batch's observations into the state, and the alerts of its ticks."""
        self._fold()
        self.buckets.flush()
        alerts, self._alerts = self._alerts, []
        self.counters.update(f"alert.{a.status}" for a in alerts)
        return [
            Output(self.topic, a.fingerprint.encode(), a.model_dump_json().encode()) for a in alerts
        ]

    def _evaluate_minute(self, minute: int) -> Iterable[Alert]:
        scopes = set(self.buckets.active.get(minute, ()))
        scopes.update(self.incidents.scopes())
        out: list[Alert] = []
        d = self.detectors
        for scope in sorted(scopes, key=feature_first):
            kind = dim_kind(scope)
            if kind in (TENANT, FEATURE):
                spend = d.spend_rate(scope, minute)
                if (
                    kind == FEATURE
                    and not self.incidents.firing("spend_rate", scope)
                    and self._spread_beyond(scope, minute, spend)
                ):
                    spend = None  # the tenant's incident: its scope comes after its features
                out.extend(self.incidents.step("spend_rate", scope, spend, minute))
            if kind not in (TENANT, FEATURE, ROUTE):
                continue  # the model dimension: read only to name an alert's top model
            level = self.levels.level(scope, minute)
            if kind == TENANT:
                obs = d.share(
                    scope,
                    minute,
                    self.cfg.retry_share_pct,
                    "duplicate generations (retries)",
                    level,
                )
                detector = "retry_storm"
            elif kind == FEATURE:
                obs = d.share(
                    scope, minute, self.cfg.violation_share_pct, "over a token budget", level
                )
                detector = "context_growth"
            else:
                obs, detector = d.model_mix(scope, minute, level), "model_mix"
            out.extend(self.incidents.step(detector, scope, obs, minute))
            self._note_evidence(detector, scope, minute, obs)
            self._learn(kind, scope, minute)
        if self.budgets is not None:
            out.extend(self._evaluate_budgets(minute, scopes))
        return out

    def _spread_beyond(self, scope: str, minute: int, obs: Observation | None) -> bool:
        """Whether a feature's anomalous spend is not the feature's alone: its tenant's other
        features together also spend ``spend_ratio`` times what they are expected to (a bulk
        job across features). Such a change is the tenant's incident, named at the tenant."""
        d = self.detectors
        if obs is None or not obs.volume_ok or not d.spend_is_anomalous(obs.observed, obs.expected):
            return False
        tenant = d.spend_rate(tenant_dim(parse_dim(scope).tenant_id), minute)
        if tenant is None:
            return False
        rest_expected = max(tenant.expected - obs.expected, 1)
        return tenant.observed - obs.observed >= self.cfg.spend_ratio * rest_expected

    def _learn(self, kind: str, scope: str, minute: int) -> None:
        """Add a closed minute to the scope's day-long level: price level per priced call
        (routes), share of counted calls in permille (tenants, features)."""
        entry = self.buckets.get(scope, minute)
        if entry is None:
            return
        if kind == ROUTE:
            self.levels.add(scope, minute, entry[AUX1], entry[AUX2])
        else:
            self.levels.add(scope, minute, entry[EVENTS], entry[AUX1] * 1000)

    def _note_evidence(
        self, detector: str, scope: str, minute: int, obs: Observation | None
    ) -> None:
        """Count, per UTC day, the scopes with traffic that never had evidence enough for a
        detector to judge them (``anomalies.unjudged_scope_days.<detector>``): silence is
        not health."""
        day = minute // DAY_MS
        if day != self._day:
            for key in self._seen - self._judged:
                self.counters[f"anomalies.unjudged_scope_days.{key[0]}"] += 1
            self._day, self._seen, self._judged = day, set(), set()
        if obs is not None and obs.evidence:
            self._seen.add((detector, scope))
            enough = (
                self.cfg.mix_min_events if detector == "model_mix" else self.cfg.share_min_events
            )
            if obs.volume_ok or obs.evidence >= enough:
                self._judged.add((detector, scope))

    def _evaluate_budgets(self, minute: int, scopes: set[str]) -> Iterable[Alert]:
        if self.budgets is None:
            return []
        book = self.budgets.book
        wanted: set[str] = set()
        for scope in scopes:
            dim = parse_dim(scope)
            if dim.kind == TENANT:
                wanted.add(budget_scope(dim.tenant_id, None))
            elif dim.kind == FEATURE:
                wanted.add(budget_scope(dim.tenant_id, dim.other))
            elif parse_scope(scope) is not None:
                wanted.add(scope)
        out: list[Alert] = []
        for scope in sorted(wanted):
            budget = book.by_scope.get(scope)
            if budget is None:
                if self.incidents.firing("budget_burn", scope):
                    out.extend(self.incidents.step("budget_burn", scope, None, minute))
                continue
            at = datetime.fromtimestamp((minute + MINUTE_MS) / 1000, UTC)
            start, end = budget_window(at, budget.window, budget.tz)
            # committed usage only: open reservations come and go with processing time
            spent = self.budgets.spend(budget, start, end, reserved=False)
            obs = self.detectors.budget_burn(budget, spent, minute)
            out.extend(self.incidents.step("budget_burn", scope, obs, minute))
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

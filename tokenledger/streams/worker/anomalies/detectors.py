"""The detectors: pure reads of one partition's buckets and spend windows that say what
was observed, what was expected and whether there was evidence enough to judge."""

from __future__ import annotations

from datetime import UTC, datetime

from tokenledger.contract.common import format_usd
from tokenledger.contract.messages import Budget
from tokenledger.streams.worker.anomalies.buckets import (
    AUX1,
    AUX2,
    COST,
    DAY_MS,
    EVENTS,
    HOUR_MS,
    MINUTE_MS,
    TOP1,
    TOP2,
    Buckets,
    human_scope,
)
from tokenledger.streams.worker.anomalies.config import DetectorConfig
from tokenledger.streams.worker.anomalies.observation import MIX_UNIT, SPEND_UNIT, Observation
from tokenledger.streams.worker.anomalies.onset import mix_onset, share_onset, spend_onset
from tokenledger.streams.worker.budgets import ADJECTIVE, budget_window
from tokenledger.streams.worker.state_keys import (
    FEATURE,
    MODEL,
    TENANT,
    dim_kind,
    parse_dim,
    scope_dim,
)
from tokenledger.streams.worker.windows import SpendWindows, window_key

SPEND_WIDTHS = (2, 5, 10)
"""spend_rate's windows in minutes: the first holding spend_min_events calls is judged."""


def _median(values: list[int]) -> int:
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) // 2


def _lower_expectation(
    hour_before: int | None, level: tuple[float, float] | None, min_weight: int
) -> tuple[int, str] | None:
    """The lower of the hour before (when it had evidence enough) and the scope's day-long
    level (when it rests on ``min_weight`` calls), with how to say which; None without
    either. A change that has lasted an hour is still measured against what came before."""
    options = []
    if hour_before is not None:
        options.append((hour_before, "in the hour before"))
    if level is not None and level[1] >= min_weight:
        options.append((int(level[0]), "over the last day"))
    return min(options) if options else None


def _minute_label(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


class Detectors:
    """The detectors over one partition's buckets and spend windows (pure reads)."""

    def __init__(self, buckets: Buckets, windows: SpendWindows, config: DetectorConfig) -> None:
        self.b = buckets
        self.windows = windows
        self.cfg = config

    def hour_spend(self, scope: str, hour_ms: int) -> int:
        entry = self.windows.totals.get(window_key("hour", scope, hour_ms))
        return entry[0] if entry else 0

    # -- spend rate ----------------------------------------------------------------------

    def spend_expected(self, scope: str, minute: int) -> tuple[int, bool]:
        """(expected nano-USD per minute, enough history to judge)."""
        recent = [self.b.get(scope, minute - i * MINUTE_MS) for i in range(1, 31)]
        with_data = [e for e in recent if e is not None]
        median = _median([e[COST] for e in with_data] + [0] * (30 - len(with_data)))
        hour = minute - minute % HOUR_MS
        previous = self.hour_spend(scope, hour - HOUR_MS) // 60
        yesterday = (
            max(
                self.hour_spend(scope, hour - DAY_MS),
                self.hour_spend(scope, hour - DAY_MS + HOUR_MS),
            )
            // 60
        )
        # judged only once the scope has been active for 20 minutes (or was yesterday)
        history = any(e is not None for e in recent[19:]) and len(with_data) >= 5 or yesterday > 0
        return max(median, previous, yesterday), history

    def spend_is_anomalous(self, observed: int, expected: int) -> bool:
        return (
            observed >= self.cfg.spend_ratio * expected
            and observed - expected >= self.cfg.spend_small_excess_nusd
        )

    def _spend(self, scope: str, minute: int) -> tuple[int, int, int, int]:
        """(observed, spent, events, width) of the window ending with ``minute``: two
        minutes, widened (5, 10) until it holds ``spend_min_events`` calls (not when the two
        minutes hold none: an idle scope spends nothing). Observed is the window's spend
        without its two largest calls, as a rate per two minutes, so that windows of any
        width compare with one expectation and one set of thresholds."""
        events = spent = width = 0
        tops: list[int] = []
        for width in range(1, SPEND_WIDTHS[-1] + 1):
            entry = self.b.get(scope, minute - (width - 1) * MINUTE_MS)
            if entry is not None:
                spent += entry[COST]
                events += entry[EVENTS]
                tops += entry[TOP1 : TOP2 + 1]
            if width in SPEND_WIDTHS and (events >= self.cfg.spend_min_events or events == 0):
                break  # enough calls, or none lately: an idle scope spends nothing
        observed = (spent - sum(sorted(tops)[-2:])) * 2 // width
        return observed, spent, events, width

    def _spend_anomalous_at(self, scope: str, minute: int) -> bool:
        observed, _, events, _ = self._spend(scope, minute)
        if observed < self.cfg.spend_small_excess_nusd or events < self.cfg.spend_min_events:
            return False
        per_minute, history = self.spend_expected(scope, minute)
        return history and self.spend_is_anomalous(observed, 2 * per_minute)

    def _sustained(self, scope: str, minute: int, width: int, per_minute: int) -> bool:
        """A smaller excess has held: for ``spend_sustain_minutes`` evaluations in a row, and
        in a widened window also in each of those minutes on its own (without its largest
        call), so that one burst inside a wide window does not pass for a lasting change."""
        minutes = range(1, self.cfg.spend_sustain_minutes)
        if not all(self._spend_anomalous_at(scope, minute - k * MINUTE_MS) for k in minutes):
            return False
        if width == 2:
            return True
        floor = self.cfg.spend_ratio * max(per_minute, 1)
        for k in range(self.cfg.spend_sustain_minutes):
            entry = self.b.get(scope, minute - k * MINUTE_MS)
            if entry is None or entry[COST] - entry[TOP1] < floor:
                return False
        return True

    def spend_rate(self, scope: str, minute: int) -> Observation | None:
        """Spend in the two minutes ending with ``minute`` (five or ten while that holds
        fewer than ``spend_min_events`` calls: a tenant at a call a minute) without its two
        largest calls (a pasted book is not a runaway), per two minutes, against twice the
        expected minute. An excess of ``spend_min_excess_nusd`` fires at once; a smaller one
        (down to ``spend_small_excess_nusd``: a small tenant's runaway) only when it has held
        for ``spend_sustain_minutes`` evaluations in a row (a loop lasts, a burst does not)."""
        observed, spent, events, width = self._spend(scope, minute)
        start, end = minute - (width - 1) * MINUTE_MS, minute + MINUTE_MS
        if observed < self.cfg.spend_small_excess_nusd:  # cheap exit: cannot fire
            return Observation(observed, 0, SPEND_UNIT, False, start, end, evidence=events)
        per_minute, history = self.spend_expected(scope, minute)
        expected = 2 * per_minute
        volume_ok = history and events >= self.cfg.spend_min_events
        if (
            volume_ok
            and self.spend_is_anomalous(observed, expected)
            and observed - expected < self.cfg.spend_min_excess_nusd
        ):
            volume_ok = self._sustained(scope, minute, width, per_minute)
        where, tenant, _ = human_scope(scope)
        summary = lambda: (
            f"{where} spent {format_usd(spent)} in the {width} minutes to "
            f"{_minute_label(end)} UTC ({events} calls), about "
            f"{format_usd(expected * width // 2)} expected; "
            f"{self._top_spenders(tenant, start, minute)}"
        )
        began = spend_onset(self.b, scope, minute, per_minute, observed // 2, without_top=True)
        return Observation(
            observed,
            expected,
            SPEND_UNIT,
            volume_ok,
            start,
            end,
            summary,
            evidence=events,
            onset=began,
        )

    def _top_spenders(self, tenant: str, first: int, last: int) -> str:
        """The tenant's feature and model that spent most in minutes [first, last]."""
        tops = []
        for kind, what in ((FEATURE, "feature"), (MODEL, "model")):
            spend: dict[str, int] = {}  # by feature or model name
            for minute in range(first, last + 1, MINUTE_MS):
                for scope in self.b.active.get(minute, ()):
                    dim = parse_dim(scope)
                    if dim.kind == kind and dim.tenant_id == tenant and dim.other is not None:
                        entry = self.b.get(scope, minute)
                        spent = entry[COST] if entry else 0
                        spend[dim.other] = spend.get(dim.other, 0) + spent
            if spend:
                best = max(spend, key=lambda k: (spend[k], k))
                tops.append(f"top {what} {best} ({format_usd(spend[best])})")
        return ", ".join(tops) or "no feature or model data"

    # -- share detectors -----------------------------------------------------------------

    def _short(self, scope: str, minute: int, minutes: int = 0) -> tuple[list[int], int, int]:
        """Totals of the short window ending with ``minute``, its start and end."""
        first = minute - ((minutes or self.cfg.short_minutes) - 1) * MINUTE_MS
        return self.b.total(scope, first, minute), first, minute + MINUTE_MS

    def _base(self, scope: str, short_first: int) -> list[int]:
        """Totals of the baseline: the ``baseline_minutes`` before the short window."""
        return self.b.total(
            scope, short_first - self.cfg.baseline_minutes * MINUTE_MS, short_first - MINUTE_MS
        )

    def share(
        self,
        scope: str,
        minute: int,
        floor_pct: int,
        what: str,
        level: tuple[float, float] | None = None,
    ) -> Observation | None:
        """Share (permille) of calls counted in AUX1 over the short window (widened 5 -> 15
        -> 30 minutes while it holds fewer than ``share_min_events`` calls), against the
        lower of the hour before it and the scope's day-long ``level``; the expectation is
        read only when the share is over ``floor_pct`` (it cannot fire otherwise)."""
        unit = "permille"
        recent, start, end = self._short(scope, minute)
        if recent[AUX1] == 0:  # nothing to count lately: cannot fire, and is not firing
            return Observation(0, 0, unit, False, start, end, evidence=recent[EVENTS])
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
            return Observation(observed, 0, unit, False, start, end, evidence=short[EVENTS])
        base = self._base(scope, start)
        found = _lower_expectation(
            base[AUX1] * 1000 // base[EVENTS] if base[EVENTS] else None,
            level,
            self.cfg.share_min_events,
        )
        expected, when = found or (0, "")
        volume_ok = found is not None
        where, _, _ = human_scope(scope)
        calls, counted, extra = short[EVENTS], short[AUX1], short[AUX2]
        detail = (
            f"{format_usd(extra)} spent on them"
            if dim_kind(scope) == TENANT
            else f"{extra // calls:,} input tokens a call on average"
        )
        summary = lambda: (
            f"{observed / 10:.1f}% of calls were {what} on {where} in the "
            f"{(end - start) // MINUTE_MS} minutes to {_minute_label(end)} UTC "
            f"({counted} of {calls} calls, {detail}), against {expected / 10:.1f}% "
            f"{when}"
        )
        began = share_onset(self.b, scope, minute, expected, observed)
        return Observation(
            observed, expected, unit, volume_ok, start, end, summary, evidence=calls, onset=began
        )

    def retry_is_anomalous(self, observed: int, expected: int) -> bool:
        return observed >= self.cfg.retry_share_pct * 10 and observed >= self.cfg.retry_ratio * max(
            expected, 1
        )

    def violation_is_anomalous(self, observed: int, expected: int) -> bool:
        return (
            observed >= self.cfg.violation_share_pct * 10
            and observed >= self.cfg.violation_ratio * max(expected, 1)
        )

    def model_mix(
        self, scope: str, minute: int, level: tuple[float, float] | None = None
    ) -> Observation | None:
        """Mean price level (permille of the route's reference model on the same tokens) of
        the priced calls in the short window, widened (5 -> 15 -> 30 -> 60 minutes) until it
        holds ``mix_min_events`` calls, against the lower of the hour before the window and
        the route's day-long ``level`` (so a switch that has lasted an hour is still measured
        against what came before it). None: no priced call in the widest window, no
        evidence either way."""
        unit = MIX_UNIT
        for minutes in self.mix_windows:
            short, start, end = self._short(scope, minute, minutes)
            if short[AUX1] >= self.cfg.mix_min_events:
                break
        calls = short[AUX1]
        if calls == 0:
            return None
        observed = short[AUX2] // calls
        base = self._base(scope, start)
        enough = self.cfg.mix_min_events
        found = _lower_expectation(
            base[AUX2] // base[AUX1] if base[AUX1] >= enough else None, level, enough
        )
        if calls < enough or found is None:
            return Observation(observed, 0, unit, False, start, end, evidence=calls)
        expected, when = found
        spent, where = short[COST], human_scope(scope)[0]
        summary = lambda: (
            f"models on {where} cost {observed / 1000:.2f}x the route's "
            f"reference model over the {minutes} minutes to {_minute_label(end)} UTC "
            f"({calls} priced calls, {format_usd(spent)}), against "
            f"{expected / 1000:.2f}x {when}"
        )
        began = mix_onset(self.b, scope, minute, expected, observed)
        return Observation(
            observed, expected, unit, True, start, end, summary, evidence=calls, onset=began
        )

    @property
    def mix_windows(self) -> tuple[int, ...]:
        short = self.cfg.short_minutes
        return (short, 3 * short, 6 * short, 12 * short)

    def mix_is_anomalous(self, observed: int, expected: int) -> bool:
        return expected > 0 and observed >= self.cfg.mix_ratio * expected

    # -- budget burn ---------------------------------------------------------------------

    def budget_burn(self, budget: Budget, spent: int, minute: int) -> Observation | None:
        at_ms = minute + MINUTE_MS
        at = datetime.fromtimestamp(at_ms / 1000, UTC)
        start, end = budget_window(at, budget.window, budget.tz)
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        elapsed, remaining = at_ms - start_ms, end_ms - at_ms
        volume_ok = (
            elapsed >= self.cfg.burn_min_elapsed_minutes * MINUTE_MS
            and spent * 100 >= self.cfg.burn_min_spent_pct * budget.limit_nusd
        )
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
        # began: when the spend rate rose from what the limit allows, evenly spread, towards
        # the last hour's rate (searched over the minutes the buckets keep)
        even = budget.limit_nusd * MINUTE_MS // (end_ms - start_ms)
        began = spend_onset(self.b, dim, minute, even, last_hour // 60, first=start_ms)
        # the evidence window: from this minute (when it fires) to the budget window's end
        return Observation(
            forecast,
            budget.limit_nusd,
            "nusd/window",
            volume_ok,
            minute,
            end_ms,
            summary,
            onset=began,
        )

    def _hours(self, dim: str, first_ms: int, end_ms: int) -> int:
        """Spend in whole UTC hours starting in [first_ms, end_ms) (budget windows align
        to 15 minutes; the forecast only needs the profile's shape)."""
        hour = first_ms - first_ms % HOUR_MS
        total = 0
        while hour < end_ms:
            total += self.hour_spend(dim, hour)
            hour += HOUR_MS
        return total

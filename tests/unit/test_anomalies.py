"""Anomaly detectors: each fires on its incident and stays quiet on clean traffic; incidents
resolve; state survives a restore; fingerprints are stable."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import holdout
from tests.helpers.holdout_scoring import budgets as holdout_budgets
from tests.helpers.holdout_scoring import score as holdout_score
from tests.helpers.scoring import DETECTOR_OF, score
from tokenledger.contract.messages import Alert, Budget
from tokenledger.contract.price_book import load_price_book
from tokenledger.streams.demo.offline import OfflineRun, OfflineWorker
from tokenledger.streams.demo.scenario import (
    Incident,
    Scenario,
    Tenant,
    mean_request_cost_nusd,
    usage_events,
)
from tokenledger.streams.worker.anomalies import AnomalyTask, DetectorConfig
from tokenledger.streams.worker.anomalies.detectors import Detectors
from tokenledger.streams.worker.anomalies.incidents import fingerprint
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.windows import SpendWindows

DAY = datetime(2026, 11, 20, tzinfo=UTC)
MIN = 60_000


def _at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


@pytest.fixture(scope="module")
def one_day() -> tuple[Scenario, OfflineRun]:
    """Six tenants for a day: one incident each on five of them, the sixth clean."""
    tenants = [Tenant(f"t{i}", 12_000, 12.0) for i in range(6)]
    incidents = [
        Incident("runaway", "t0", _at(11.5), _at(12.0)),
        Incident("retry_storm", "t1", _at(13.25), _at(13.75)),
        Incident("model_switch", "t2", _at(10.5), _at(12.0)),
        Incident("prompt_regression", "t3", _at(14.0), _at(16.0)),
        Incident("budget_burn", "t4", _at(5.0), _at(12.0)),
    ]
    scenario = Scenario(tenants, DAY, 1, incidents, seed=11)
    prices = load_price_book()
    budgets = [
        Budget(
            tenant_id=t.tenant_id,
            updated_at=DAY,
            limit_nusd=2 * mean_request_cost_nusd(t, prices) * t.requests_per_day,
        )
        for t in tenants
    ]
    run = OfflineWorker(prices=prices, budgets=budgets).feed(usage_events(scenario))
    return scenario, run


def test_each_detector_fires_on_its_incident_and_nowhere_else(
    one_day: tuple[Scenario, OfflineRun],
) -> None:
    scenario, run = one_day
    result = score(scenario, run.alerts)
    for kind, found in result.kinds.items():
        assert (kind, found.injected, found.detected) == (kind, 1, 1)
    assert result.false_alerts == []
    firing = [a for a in run.alerts if a.status == "firing"]
    assert not [a for a in firing if a.tenant_id == "t5"], "the clean tenant was paged"
    for incident in scenario.incidents:
        own = [
            a
            for a in firing
            if a.tenant_id == incident.tenant_id and a.detector == DETECTOR_OF[incident.kind]
        ]
        assert len(own) == 1, (incident.kind, [a.summary for a in own])


def test_runaway_spend_is_detected_within_two_minutes_of_event_time(
    one_day: tuple[Scenario, OfflineRun],
) -> None:
    scenario, run = one_day
    runaway = scenario.incidents[0]
    first = min(
        a.issued_at for a in run.alerts if a.tenant_id == "t0" and a.detector == "spend_rate"
    )
    assert runaway.start <= first <= runaway.start + timedelta(minutes=2)


def test_every_incident_resolves_once_with_its_fingerprint(
    one_day: tuple[Scenario, OfflineRun],
) -> None:
    _, run = one_day
    by_fp: dict[str, list[Alert]] = {}
    for alert in run.alerts:
        by_fp.setdefault(alert.fingerprint, []).append(alert)
    for fp, alerts in by_fp.items():
        assert [a.status for a in alerts] in (["firing", "resolved"], ["firing"]), fp
        if len(alerts) == 2:
            firing, resolved = alerts
            assert resolved.issued_at > firing.issued_at
            assert (resolved.detector, resolved.scope) == (firing.detector, firing.scope)
            assert resolved.ends_at is not None and resolved.ends_at > firing.starts_at
    incidents_over = [a for a in run.alerts if a.detector != "budget_burn"]
    statuses = Counter(a.status for a in incidents_over)
    assert statuses["firing"] == statuses["resolved"] > 0


def test_clean_days_with_a_morning_ramp_raise_nothing() -> None:
    tenants = [
        Tenant(f"c{i}", n, peak)
        for i, (n, peak) in enumerate([(2000, 8.0), (8000, 9.0), (24_000, 15.0)])
    ]
    scenario = Scenario(tenants, DAY, 2, [], seed=3)
    run = OfflineWorker().feed(usage_events(scenario))
    assert run.events > 60_000
    assert [a.summary for a in run.alerts] == []


# -- the pieces, by hand -------------------------------------------------------------------


def _task(config: DetectorConfig | None = None) -> tuple[AnomalyTask, ChangelogState]:
    state = ChangelogState()
    windows = SpendWindows(state)
    return AnomalyTask(state, windows, "alerts", config=config), state


def _fill(task: AnomalyTask, scope: str, minutes: range, cost: int, events: int = 20) -> None:
    for m in minutes:
        for _ in range(events):
            task.buckets.add(scope, m * MIN, cost // events)


def test_spend_expectation_is_the_largest_of_median_previous_hour_and_yesterday() -> None:
    task, _ = _task()
    minute = 10 * 60 * MIN  # 10:00
    _fill(task, "t=a", range(600 - 30, 600), 1_000_000)
    task.detectors.windows.totals["w:hour:t=a:32400000"] = [600_000_000, 1, 0]  # 09:00
    assert task.detectors.spend_expected("t=a", minute) == (10_000_000, True)
    yesterday_next = 10 * 3_600_000 - 86_400_000 + 3_600_000
    task.detectors.windows.totals[f"w:hour:t=a:{yesterday_next}"] = [1_200_000_000, 1, 0]
    assert task.detectors.spend_expected("t=a", minute) == (20_000_000, True)


def test_two_outsized_calls_do_not_make_a_runaway() -> None:
    task, _ = _task()
    d: Detectors = task.detectors
    _fill(task, "t=a", range(0, 30), 10_000_000)
    for _ in range(10):
        task.buckets.add("t=a", 30 * MIN, 1_000_000)
    task.buckets.add("t=a", 30 * MIN, 2_000_000_000)
    task.buckets.add("t=a", 31 * MIN, 3_000_000_000)
    obs = d.spend_rate("t=a", 31 * MIN)
    assert obs is not None and obs.observed == 10_000_000 and not obs.volume_ok
    for _ in range(40):
        task.buckets.add("t=a", 31 * MIN, 20_000_000)
    obs = d.spend_rate("t=a", 31 * MIN)
    assert obs is not None and obs.volume_ok
    assert (obs.observed, obs.expected) == (810_000_000, 20_000_000)
    assert d.spend_is_anomalous(obs.observed, obs.expected)


def test_share_window_widens_while_volume_is_low() -> None:
    task, _ = _task()
    for m in range(0, 60):
        task.buckets.add("t=a", m * MIN, 0)  # one clean call a minute for an hour
    for m in range(60, 90):
        task.buckets.add("t=a", m * MIN, 0, 1)  # then one retried call a minute
    obs = task.detectors.share("t=a", 89 * MIN, 20, "retried")
    assert obs is not None and obs.volume_ok
    assert (obs.observed, obs.expected, obs.start_ms, obs.end_ms) == (1000, 0, 60 * MIN, 90 * MIN)


def test_budget_forecast_takes_the_lower_of_recent_rate_and_yesterdays_profile() -> None:
    task, _ = _task()
    budget = Budget(tenant_id="a", limit_nusd=100_000_000_000, updated_at=DAY)
    at = int(_at(6).timestamp() * 1000) - MIN  # the minute ending at 06:00
    for h in range(24):  # yesterday: $1 an hour, flat
        start = int((_at(h) - timedelta(days=1)).timestamp() * 1000)
        task.detectors.windows.totals[f"w:hour:t=a:{start}"] = [1_000_000_000, 1, 0]
    _fill(task, "t=a", range(at // MIN - 59, at // MIN + 1), 60_000_000_000 // 60)
    obs = task.detectors.budget_burn(budget, 30_000_000_000, at)
    assert obs is not None and obs.volume_ok
    # so far $30 by 06:00 against yesterday's $6: x5 of yesterday's remaining $18 = $120
    # last hour $60/h x 18 h = $1080 more: the lower is $30 + $90
    assert obs.observed == 120_000_000_000 and obs.expected == budget.limit_nusd


def test_an_incident_fires_once_resolves_after_quiet_minutes_and_cools_down() -> None:
    config = DetectorConfig(resolve_after=3, cooldown_minutes=10)
    task, state = _task(config)
    _fill(task, "tf=a|f", range(0, 40), 10_000_000)
    _fill(task, "tf=a|f", range(40, 45), 2_000_000_000)
    _fill(task, "tf=a|f", range(45, 80), 10_000_000)
    alerts = []
    for m in range(40, 80):
        alerts += [(m, a) for a in task._evaluate_minute(m * MIN)]
    firing = [(m, a) for m, a in alerts if a.status == "firing"]
    resolved = [(m, a) for m, a in alerts if a.status == "resolved"]
    assert [(m, a.detector, a.scope) for m, a in firing] == [
        (40, "spend_rate", "tenant/a/feature/f")
    ]
    assert [m for m, _ in resolved] == [48]  # 46, 47, 48 are quiet (45 still in the window)
    assert (
        firing[0][1].fingerprint
        == resolved[0][1].fingerprint
        == fingerprint("spend_rate", "tf=a|f", 40 * MIN)
    )
    _fill(task, "tf=a|f", range(52, 54), 2_000_000_000)  # again, inside the cooldown
    assert [a for m in (52, 53) for a in task._evaluate_minute(m * MIN)] == []
    assert state.get("a:f:spend_rate:tf=a|f") == f"cool|{(48 + 1 + 10) * MIN}"


def test_a_restored_task_continues_the_incident_without_firing_again() -> None:
    task, state = _task(DetectorConfig(resolve_after=3))
    _fill(task, "t=a", range(0, 40), 10_000_000)
    _fill(task, "t=a", range(40, 44), 2_000_000_000)
    fired = [a for m in range(40, 43) for a in task._evaluate_minute(m * MIN)]
    task.buckets.flush()
    copy = ChangelogState()
    for key, value in state.data.items():
        copy.restore(key, value)
    again = AnomalyTask(copy, SpendWindows(copy), "alerts", config=DetectorConfig(resolve_after=3))
    later = [a for m in range(43, 50) for a in again._evaluate_minute(m * MIN)]
    assert [a.status for a in fired] == ["firing"]
    assert [a.status for a in later] == ["resolved"]
    assert later[0].fingerprint == fired[0].fingerprint


def test_the_holdout_traffic_is_caught_and_its_traps_stay_quiet() -> None:
    """The second, independent generator: every labeled incident detected by its detector on
    its scope, no alert on the traps or anywhere else, a low-volume model switch within 30
    minutes of event time."""
    h = holdout.holdout()
    events = list(holdout.events(h))
    prices = load_price_book()
    run = OfflineWorker(prices=prices, budgets=holdout_budgets(h, events, prices)).feed(events)
    result = holdout_score(h, run.alerts)
    assert [(x.kind, x.tenant_id) for x in result.missed] == []
    assert [(a.detector, a.scope, a.summary) for a in result.false_alerts] == []
    assert max(result.detect_s["model_switch"]) <= 30 * 60
    model_mix = [a for a in run.alerts if a.detector == "model_mix" and a.status == "firing"]
    assert sorted(a.scope for a in model_mix) == [
        "tenant/fjord/route/classify",
        "tenant/quill/route/classify",
    ]

"""The scoring oracle for the detectors on a labeled scenario (tokenledger.streams.demo.scenario).

An alert detects an incident only when its tenant, detector and scope are the ones the
incident's label implies: a runaway is a spend-rate alert on its tenant or its agent loop's
feature, a model switch a model-mix alert on the switched route, a prompt regression a
context-growth alert on the regressed feature, a retry storm a retry-storm alert on its
tenant, a budget burn a budget-burn alert on the tenant's budget. An alert that is neither
an incident's detection nor a consequence named in ``tolerated_alerts`` is false. Kept out
of the shipped package on purpose."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tokenledger.contract.messages import Alert
from tokenledger.streams.demo.scenario import RUNAWAY_LOOP, SWITCHED_ROUTE, Incident, Scenario

MATCH_GRACE = timedelta(minutes=60)
"""An alert issued up to this long after an incident ends still belongs to it."""

DETECTOR_OF: dict[str, str] = {
    "runaway": "spend_rate",
    "retry_storm": "retry_storm",
    "model_switch": "model_mix",
    "prompt_regression": "context_growth",
    "budget_burn": "budget_burn",
}


def _features(scenario: Scenario, incident: Incident) -> set[str]:
    """The features whose calls the incident changes."""
    tenant = next(t for t in scenario.tenants if t.tenant_id == incident.tenant_id)
    if incident.kind == "runaway":
        return {RUNAWAY_LOOP.name}
    if incident.kind == "model_switch":
        return {f.name for f in tenant.features if f.route == SWITCHED_ROUTE}
    if incident.kind == "prompt_regression":
        return {tenant.features[0].name}
    return set()  # retry storms and bulk jobs spread over every feature


def expected_alerts(scenario: Scenario, incident: Incident) -> set[tuple[str, str]]:
    """(detector, scope) pairs that detect ``incident``."""
    tenant = f"tenant/{incident.tenant_id}"
    detector = DETECTOR_OF[incident.kind]
    if incident.kind == "runaway":
        return {(detector, tenant)} | {
            (detector, f"{tenant}/feature/{f}") for f in _features(scenario, incident)
        }
    if incident.kind == "model_switch":
        return {(detector, f"{tenant}/route/{SWITCHED_ROUTE}")}
    if incident.kind == "prompt_regression":
        return {(detector, f"{tenant}/feature/{f}") for f in _features(scenario, incident)}
    return {(detector, tenant)}


def tolerated_alerts(scenario: Scenario, incident: Incident) -> set[tuple[str, str]]:
    """Alerts that are not the incident's own detection but true of it. Every incident
    adds spend (a loop, a pricier model, longer prompts, retried calls, a bulk job), so a
    spend-rate alert on its tenant or on a feature it changes, and a budget-burn alert on
    the tenant's budget, are true; a share or model-mix alert anywhere else is not."""
    tenant = f"tenant/{incident.tenant_id}"
    spend = {("spend_rate", tenant), ("budget_burn", tenant)}
    return spend | {("spend_rate", f"{tenant}/feature/{f}") for f in _features(scenario, incident)}


@dataclass
class KindScore:
    injected: int = 0
    detected: int = 0
    detect_s: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.detected / self.injected if self.injected else 1.0


@dataclass
class Score:
    kinds: dict[str, KindScore]
    alerts: int
    true_alerts: int
    by_detector: dict[str, tuple[int, int]]
    """detector -> (alerts, alerts that belong to an incident)"""
    tenant_days: int
    false_alerts: list[Alert]

    @property
    def recall(self) -> float:
        injected = sum(k.injected for k in self.kinds.values())
        return sum(k.detected for k in self.kinds.values()) / injected if injected else 1.0

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def false_alerts_per_tenant_day(self) -> float:
        return len(self.false_alerts) / self.tenant_days


def _during(incident: Incident, at: datetime) -> bool:
    return incident.start <= at <= incident.end + MATCH_GRACE


def score(scenario: Scenario, alerts: list[Alert]) -> Score:
    """Match firing alerts to the scenario's incidents by tenant, detector, scope and time
    (issued, in processing time that follows event time offline, between the incident's
    start and MATCH_GRACE after its end). Time to detect: the incident's start to the first
    matching alert's issue."""
    kinds = {kind: KindScore() for kind in DETECTOR_OF}
    firing = sorted((a for a in alerts if a.status == "firing"), key=lambda a: a.issued_at)
    by_detector: dict[str, tuple[int, int]] = {}
    true_alerts = 0
    false_alerts = []
    for alert in firing:
        pair = (alert.detector, alert.scope)
        belongs = [
            i
            for i in scenario.incidents
            if i.tenant_id == alert.tenant_id
            and _during(i, alert.issued_at)
            and pair in expected_alerts(scenario, i) | tolerated_alerts(scenario, i)
        ]
        total, matched = by_detector.get(alert.detector, (0, 0))
        by_detector[alert.detector] = (total + 1, matched + (1 if belongs else 0))
        if belongs:
            true_alerts += 1
        else:
            false_alerts.append(alert)
    for incident in scenario.incidents:
        kind = kinds[incident.kind]
        kind.injected += 1
        wanted = expected_alerts(scenario, incident)
        hits = [
            a
            for a in firing
            if a.tenant_id == incident.tenant_id
            and (a.detector, a.scope) in wanted
            and _during(incident, a.issued_at)
        ]
        if hits:
            kind.detected += 1
            kind.detect_s.append((hits[0].issued_at - incident.start).total_seconds())
    return Score(kinds, len(firing), true_alerts, by_detector, scenario.tenant_days, false_alerts)

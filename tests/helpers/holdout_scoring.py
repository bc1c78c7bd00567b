"""Scoring of the holdout traffic (tests/helpers/holdout.py), written apart from the first
generator's scoring: each firing alert issued from day 1 on is matched by tenant, detector
and scope to a labeled incident (in time: from its start to an hour after its end). An
incident's own (detector, scope) counts for recall; a spend-rate alert on its tenant or a
scope it changes, or a budget-burn alert on its tenant, is true of it (every incident adds
spend) but detects nothing. Anything else is a false alert, traps included."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.helpers.holdout import Holdout, Label
from tokenledger.contract.messages import Alert, Budget
from tokenledger.contract.price_book import PriceBook
from tokenledger.contract.pricing import TokenCounts

GRACE = timedelta(hours=1)


@dataclass
class HoldoutScore:
    incidents: int = 0
    detected: int = 0
    alerts: int = 0
    true_alerts: int = 0
    detect_s: dict[str, list[float]] = field(default_factory=dict)
    missed: list[Label] = field(default_factory=list)
    false_alerts: list[Alert] = field(default_factory=list)
    tenant_days: int = 1

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else 1.0

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def false_alerts_per_tenant_day(self) -> float:
        return len(self.false_alerts) / self.tenant_days


def _in_time(label: Label, at: datetime) -> bool:
    return label.start <= at <= label.end + GRACE


def _consequence(label: Label, alert: Alert) -> bool:
    tenant = f"tenant/{label.tenant_id}"
    if alert.detector == "budget_burn":
        return alert.scope == tenant
    return alert.detector == "spend_rate" and (alert.scope == tenant or alert.scope in label.scopes)


def score(h: Holdout, alerts: Iterable[Alert]) -> HoldoutScore:
    incidents = [x for x in h.labels if not x.trap]
    firing = sorted(
        (a for a in alerts if a.status == "firing" and a.issued_at >= h.scored_from),
        key=lambda a: a.issued_at,
    )
    out = HoldoutScore(
        incidents=len(incidents), alerts=len(firing), tenant_days=h.scored_tenant_days
    )
    for alert in firing:
        mine = [
            x for x in incidents if x.tenant_id == alert.tenant_id and _in_time(x, alert.issued_at)
        ]
        own = any(alert.detector == x.detector and alert.scope in x.scopes for x in mine)
        if own or any(_consequence(x, alert) for x in mine):
            out.true_alerts += 1
        else:
            out.false_alerts.append(alert)
    for label in incidents:
        hits = [
            a
            for a in firing
            if a.tenant_id == label.tenant_id
            and a.detector == label.detector
            and a.scope in label.scopes
            and _in_time(label, a.issued_at)
        ]
        if hits:
            out.detected += 1
            out.detect_s.setdefault(label.kind, []).append(
                (hits[0].issued_at - label.start).total_seconds()
            )
        else:
            out.missed.append(label)
    return out


def budgets(
    h: Holdout, day0: Iterable[tuple[datetime, dict[str, Any]]], prices: PriceBook
) -> list[Budget]:
    """A daily budget per tenant: three times its day-0 spend (twice for the tenant whose
    budget a bulk job burns)."""
    spend: dict[str, int] = {}
    for ts, e in day0:
        if ts >= h.start + timedelta(days=1):
            break
        tokens = TokenCounts(e["input_tokens"], e["output_tokens"], e["cached_input_tokens"])
        priced = prices.price(e["provider"], e["model"], ts, tokens)
        spend[e["tenant_id"]] = spend.get(e["tenant_id"], 0) + (priced.cost_nusd if priced else 0)
    burn = {x.tenant_id for x in h.labels if x.kind == "budget_burn"}
    return [
        Budget(
            tenant_id=t.tenant_id,
            updated_at=h.start,
            limit_nusd=max(1, spend.get(t.tenant_id, 0) * (2 if t.tenant_id in burn else 3)),
        )
        for t in h.tenants
    ]

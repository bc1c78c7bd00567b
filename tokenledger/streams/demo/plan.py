"""What the demo replays: five tenants' shares of a day's traffic, the incidents placed in
the budget day, and the tenants' daily budgets. Pure: a clock reading in, a plan out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tokenledger.contract.days import start_of_day
from tokenledger.contract.messages import Budget
from tokenledger.contract.price_book import PriceBook
from tokenledger.streams.demo.scenario import Incident, Scenario, Tenant, mean_request_cost_nusd

TENANTS = (
    ("acme", 0.38, 13.0),
    ("globex", 0.25, 9.0),
    ("initech", 0.17, 15.0),
    ("umbrella", 0.12, 11.0),
    ("hooli", 0.08, 17.0),
)
ANOMALY_TENANT = "globex"
OVER_BUDGET_TENANT = "initech"


@dataclass
class DemoPlan:
    requests_per_day: int = 100_000
    seconds: float = 150.0
    """Wall-clock seconds the simulated day is compressed into."""
    seed: int = 42
    drain_timeout_s: float = 180.0


def _offset_hours(now: datetime) -> int:
    offset = 23 - now.hour
    return offset - 24 if offset > 14 else offset


def day_timezone(now: datetime) -> str:
    """A fixed-offset zone in which it is now 23:xx, so that the last 24 hours are (almost
    all) one budget day: the simulated day is that tenant's business day."""
    offset = _offset_hours(now)
    # POSIX-style names invert the sign: Etc/GMT-5 is UTC+5
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def plan_scenario(plan: DemoPlan, now: datetime) -> Scenario:
    """The simulated day: the last 24 hours, its incidents placed in the budget day."""
    start = now - timedelta(hours=24)
    tz_offset = _offset_hours(now)
    local_midnight = start_of_day(now, timezone(timedelta(hours=tz_offset)))
    tenants = [
        Tenant(name, max(1, int(plan.requests_per_day * share)), peak)
        for name, share, peak in TENANTS
    ]
    runaway_at = start + timedelta(hours=15, minutes=10)
    incidents = [
        Incident("runaway", ANOMALY_TENANT, runaway_at, runaway_at + timedelta(minutes=10)),
        Incident(
            "budget_burn",
            OVER_BUDGET_TENANT,
            local_midnight + timedelta(hours=6),
            local_midnight + timedelta(hours=13),
        ),
    ]
    return Scenario(tenants, start, 1, incidents, seed=plan.seed, length=timedelta(hours=24))


def daily_budgets(scenario: Scenario, now: datetime, prices: PriceBook) -> list[Budget]:
    """Five times a tenant's typical day, 1.2 times for the one whose bulk job overspends;
    none for the runaway's tenant (on-call hears about it from the anomaly alert)."""
    budgets = []
    for tenant in scenario.tenants:
        if tenant.tenant_id == ANOMALY_TENANT:
            continue
        typical = mean_request_cost_nusd(tenant, prices) * tenant.requests_per_day
        factor = 12 if tenant.tenant_id == OVER_BUDGET_TENANT else 50  # tenths
        budgets.append(
            Budget(
                tenant_id=tenant.tenant_id,
                limit_nusd=max(typical * factor // 10, 1),
                tz=day_timezone(now),
                warn_pct=(50, 80),
                updated_at=now,
            )
        )
    return budgets

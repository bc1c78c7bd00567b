"""Detector quality on labeled synthetic traffic: precision, recall, time to detect, on two
generators: the demo's (tokenledger/streams/demo/scenario.py, the traffic the detectors were built on)
and a holdout written apart from it for evaluation only (tests/helpers/holdout.py, figures
under ``anomalies.holdout.*``).

Demo generator: 16 tenants (2,000 to 20,000 requests a day, business-hour peaks in different places) over
three simulated days, two incidents of each kind from the second day on, daily budgets at
twice each tenant's typical day. The worker's processors run offline (tokenledger/streams/demo/offline.py)
with the processing clock one second behind event time, in batches of at most five seconds.
"""

from __future__ import annotations

import sys
import time

from bench import Figure
from tests.helpers import holdout
from tests.helpers.holdout_scoring import budgets as holdout_budgets
from tests.helpers.holdout_scoring import score as holdout_score
from tests.helpers.scoring import score
from tokenledger.contract.messages import Budget
from tokenledger.contract.price_book import PriceBook, load_price_book
from tokenledger.streams.demo.offline import OfflineWorker
from tokenledger.streams.demo.scenario import default_scenario, mean_request_cost_nusd, usage_events


def run() -> list[Figure]:
    scenario = default_scenario(tenants=16, days=3, seed=7)
    prices = load_price_book()
    budgets = [
        Budget(
            tenant_id=t.tenant_id,
            updated_at=scenario.start,
            limit_nusd=2 * mean_request_cost_nusd(t, prices) * t.requests_per_day,
        )
        for t in scenario.tenants
    ]
    started = time.perf_counter()
    result = OfflineWorker(prices=prices, budgets=budgets).feed(usage_events(scenario))
    elapsed = time.perf_counter() - started
    s = score(scenario, result.alerts)
    print(
        f"  {result.events:,} events, {scenario.tenant_days} tenant-days, "
        f"{len(scenario.incidents)} incidents, {elapsed:.0f}s",
        file=sys.stderr,
    )
    print(
        f"  {'incident':<18} {'injected':>8} {'detected':>8} {'worst detect':>12}", file=sys.stderr
    )
    for kind, k in s.kinds.items():
        worst = f"{max(k.detect_s):.0f}s" if k.detect_s else "-"
        print(f"  {kind:<18} {k.injected:>8} {k.detected:>8} {worst:>12}", file=sys.stderr)
    for detector, (alerts, matched) in sorted(s.by_detector.items()):
        print(
            f"  detector {detector:<15} alerts {alerts:>3}, belonging to an incident {matched:>3}",
            file=sys.stderr,
        )
    for alert in s.false_alerts:
        print(f"  false alert: {alert.issued_at:%Y-%m-%d %H:%M} {alert.summary}", file=sys.stderr)
    runaway = s.kinds["runaway"].detect_s
    figures = [
        Figure(
            "anomalies.recall", s.recall, "ratio", "injected incidents detected by their detector"
        ),
        Figure(
            "anomalies.precision", s.precision, "ratio", "firing alerts that belong to an incident"
        ),
        Figure(
            "anomalies.false_alerts_per_tenant_day",
            s.false_alerts_per_tenant_day,
            "alerts",
            f"{len(s.false_alerts)} over {scenario.tenant_days} tenant-days",
        ),
        Figure(
            "anomalies.runaway_detect_s",
            max(runaway) if runaway else float("nan"),
            "s",
            "worst event time from a runaway's start to its alert",
        ),
        Figure(
            "anomalies.events_per_s",
            result.events / elapsed,
            "ev/s",
            "offline: validate, price, dedup, windows, budgets, detectors",
        ),
    ]
    for kind, k in s.kinds.items():
        if k.detect_s and kind != "runaway":
            figures.append(Figure(f"anomalies.{kind}_detect_s", max(k.detect_s), "s", "worst"))
    return figures + run_holdout(prices)


def run_holdout(prices: PriceBook) -> list[Figure]:
    h = holdout.holdout()
    events = list(holdout.events(h))
    result = OfflineWorker(prices=prices, budgets=holdout_budgets(h, events, prices)).feed(events)
    s = holdout_score(h, result.alerts)
    print(
        f"  holdout: {len(events):,} events, {s.incidents} incidents, "
        f"{sum(x.trap for x in h.labels)} traps, {s.tenant_days} scored tenant-days",
        file=sys.stderr,
    )
    for label in s.missed:
        print(f"  holdout missed: {label.kind} on {label.tenant_id}", file=sys.stderr)
    for alert in s.false_alerts:
        print(
            f"  holdout false alert: {alert.issued_at:%Y-%m-%d %H:%M} {alert.detector} "
            f"{alert.summary}",
            file=sys.stderr,
        )
    figures = [
        Figure("anomalies.holdout.recall", s.recall, "ratio", "labeled incidents detected"),
        Figure(
            "anomalies.holdout.precision", s.precision, "ratio", "firing alerts true of an incident"
        ),
        Figure(
            "anomalies.holdout.false_alerts_per_tenant_day",
            s.false_alerts_per_tenant_day,
            "alerts",
            f"{len(s.false_alerts)} over {s.tenant_days} tenant-days, traps included",
        ),
    ]
    for kind, seconds in sorted(s.detect_s.items()):
        figures.append(
            Figure(
                f"anomalies.holdout.{kind}_detect_s",
                max(seconds),
                "s",
                f"worst of {len(seconds)} (event time)",
            )
        )
    return figures

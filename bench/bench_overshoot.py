"""How far spend goes past a budget when several gateways spend against one tenant at once.

GATEWAYS threads, each with its own BudgetGuard and Ledger, send gpt-4o-mini calls for one
tenant at a combined rate (200, 2,000, 10,000 requests/s) against a daily limit sized to
about LIMIT_SECONDS of that traffic, through a real worker: each checks its guard before a
call and reports the call's usage. Spend past the limit is what the calls that passed
before every guard saw the block cost: rate x (usage to worker + worker to signal + signal
to guard). ``budgets.overshoot_pct_at_<rate>_rps``: (spend - limit) / limit.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bench import Figure, local_broker
from tokenledger import BudgetGuard, Ledger
from tokenledger.contract import topics
from tokenledger.contract.common import format_usd
from tokenledger.contract.messages import UsageEvent
from tokenledger.contract.topics import TopicSpec
from tokenledger.ledger import TopicNames
from tokenledger.streams.admin import budgets as budget_admin
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.worker import service as worker

RATES = (200, 2_000, 10_000)
GATEWAYS = 4
LIMIT_SECONDS = 5
CALL_NUSD = 2000 * 150 + 200 * 600  # gpt-4o-mini, 2,000 in / 200 out: $0.00042


def overshoot(bootstrap: str, home: Path, rate: int) -> tuple[float, int, int]:
    """(percent over the limit, spent nano-USD, limit nano-USD) at ``rate`` requests/s."""
    env = {
        "TOKENLEDGER_KAFKA": bootstrap,
        "TOKENLEDGER_PARTITIONS": "3",
        "TOKENLEDGER_TOPIC_NAMESPACE": f"ov{uuid.uuid4().hex[:6]}",
    }
    settings = replace(Settings.from_env(env), home=home)
    create_topics(
        bootstrap,
        [TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS],
        3,
        1,
    )
    limit = rate * LIMIT_SECONDS * CALL_NUSD
    budget_admin.put(
        settings,
        budget_admin.make_budget("acme", None, f"{Decimal(limit) / 10**9}", "day", "UTC", "50"),
    )
    engine = worker.build(settings, "ov", max_batch=5000)
    runner = threading.Thread(target=engine.run, daemon=True)
    runner.start()
    names = TopicNames(
        **{f: settings.topic(getattr(topics, f.upper())) for f in ("usage", "requests", "outcomes")}
    )
    spent = [0] * GATEWAYS
    blocked = threading.Barrier(GATEWAYS + 1)

    def gateway(n: int) -> None:
        guard = BudgetGuard(bootstrap=bootstrap, topic=settings.topic(topics.SIGNALS)).start()
        guard.wait_ready(60)
        ledger = Ledger("gw", bootstrap=bootstrap, topics=names, spill_dir=home / f"spill{n}")
        share, sent, started = rate / GATEWAYS, 0, time.perf_counter()
        refused = False
        while not refused and time.perf_counter() - started < LIMIT_SECONDS * 20:
            due = int((time.perf_counter() - started) * share) + 1
            while sent < due and not refused:
                refused = not guard.check("acme").allowed
                if not refused:
                    ledger.emit(
                        UsageEvent(
                            event_id=uuid.uuid4().hex,
                            request_id=f"{n}-{sent}",
                            idempotency_key=f"{n}-{sent}",
                            ts=datetime.now(UTC),
                            tenant_id="acme",
                            service="gw",
                            feature="chat",
                            model="gpt-4o-mini",
                            provider="openai",
                            input_tokens=2000,
                            output_tokens=200,
                            latency_ms=300,
                            success=True,
                        )
                    )
                    spent[n] += CALL_NUSD
                    sent += 1
            time.sleep(0.002)
        ledger.close(timeout=30)
        guard.close()
        blocked.wait(120)

    threads = [threading.Thread(target=gateway, args=(n,), daemon=True) for n in range(GATEWAYS)]
    for t in threads:
        t.start()
    blocked.wait(LIMIT_SECONDS * 20 + 120)
    engine.stop()
    runner.join(30)
    total = sum(spent)
    return (total - limit) * 100 / limit, total, limit


def run() -> list[Figure]:
    figures = []
    with local_broker() as (bootstrap, tmp):
        for rate in RATES:
            pct, spent, limit = overshoot(bootstrap, tmp / f"h{rate}", rate)
            figures.append(
                Figure(
                    f"budgets.overshoot_pct_at_{rate}_rps",
                    pct,
                    "%",
                    f"{format_usd(spent - limit)} past a "
                    f"{format_usd(limit)} limit, {GATEWAYS} gateways",
                )
            )
    return figures

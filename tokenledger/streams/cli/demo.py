"""The demo: the whole pipeline on a simulated day."""

from __future__ import annotations

import argparse

from tokenledger.streams.cli.base import Add
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the whole pipeline on a simulated day, then print the summary and the report."""
    from tokenledger.streams.demo import run as demo

    if args.requests_per_day < 100 or args.seconds <= 0:
        raise UserError("--requests-per-day must be at least 100 and --seconds above 0")
    plan = demo.DemoPlan(requests_per_day=args.requests_per_day, seconds=args.seconds)
    result = demo.run(settings, plan)
    print(result.summary)
    blocked = (
        ", ".join(
            f"{t}: {n:,} requests ({result.block_reasons[t]})"
            for t, n in sorted(result.blocked.items())
        )
        or "none"
    )
    print(f"Refused at the gateway (BudgetGuard): {blocked}")
    paged = [f"{a['status']} {a['detector']} on {a['scope']}" for a in result.alerts]
    print(
        f"Paged to on-call ({settings.home / 'demo' / 'alerts.jsonl'}): "
        f"{'; '.join(paged) or 'nothing'}"
    )
    print(f"\nReport: {result.report}")
    return 0


def register(add: Add) -> None:
    p = add("demo", cmd_demo, "run everything on a simulated day of traffic, then report")
    p.add_argument("--requests-per-day", type=int, default=100_000, help="(100000)")
    p.add_argument(
        "--seconds",
        type=float,
        default=150.0,
        help="wall-clock seconds the day is replayed in (150)",
    )

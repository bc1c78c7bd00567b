"""The long-running stages: the stream worker, the ClickHouse sink and the notifier."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from tokenledger.streams.cli.base import Add
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the stream worker until SIGTERM or Ctrl-C; it finishes its batch and leaves."""
    from tokenledger.streams.worker import service as worker
    from tokenledger.streams.worker.memory import limit_malloc_arenas

    if not 0 < args.dedup_hours <= 24 * 30:
        raise UserError("--dedup-hours must be above 0 and at most 720 (30 days)")
    if not 1 <= args.signal_heartbeat <= 3600:
        raise UserError("--signal-heartbeat must be 1 to 3600 seconds")
    limit_malloc_arenas()  # before RocksDB's and librdkafka's threads start
    engine = worker.build(
        settings,
        args.instance,
        max_batch=args.max_batch,
        dedup_retention=timedelta(hours=args.dedup_hours),
        heartbeat=timedelta(seconds=args.signal_heartbeat),
        state=args.state,
    )
    engine.install_signal_handlers()
    engine.run()
    counters = engine.counters()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counters.items())) or "no events"
    print(f"worker {engine.config.instance_id} stopped after {engine.records} records: {summary}")
    return 0


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    """Run the ClickHouse sink until SIGTERM or Ctrl-C (it owns an embedded data path)."""
    import signal as signals

    from tokenledger.streams.admin.topics import require_broker
    from tokenledger.streams.sink import migrations
    from tokenledger.streams.sink.client import get_client
    from tokenledger.streams.sink.service import Sink

    require_broker(settings.kafka)

    def connect() -> object:
        client = get_client(settings.clickhouse, settings.clickhouse_database, create=True)
        migrations.migrate(client)
        return client

    sink = Sink(settings, connect, max_rows=args.max_rows, max_wait_s=args.max_wait)
    for sig in (signals.SIGTERM, signals.SIGINT):
        signals.signal(sig, lambda *_: sink.stop())
    sink.run()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(sink.counters.items())) or "nothing"
    print(f"sink stopped: {summary}")
    return 0


def cmd_notify(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver alerts to the receivers configured in the environment until SIGTERM/Ctrl-C."""
    import signal as signals

    from tokenledger.streams.admin.topics import require_broker
    from tokenledger.streams.alerts.notifier import Notifier
    from tokenledger.streams.alerts.receivers import receivers_from_env

    receivers = receivers_from_env()
    notifier = Notifier(
        settings,
        receivers,
        retries=args.retries,
        backoff_s=args.backoff,
        resend_s=args.resend_interval,
    )
    require_broker(settings.kafka)
    for sig in (signals.SIGTERM, signals.SIGINT):
        signals.signal(sig, lambda *_: notifier.stop())
    names = ", ".join(r.name for r in receivers)
    print(f"notifier delivering alerts to {names}", file=sys.stderr)
    notifier.run()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(notifier.counters.items())) or "no alerts"
    print(f"notifier stopped: {summary}")
    return 0


def register(add: Add) -> None:
    p = add("worker", cmd_worker, "run the stream worker (price, deduplicate, windows)")
    p.add_argument(
        "--instance", help="stable name of this worker (default: <host>-0); restarts must reuse it"
    )
    p.add_argument("--max-batch", type=int, default=2000, help="records per transaction")
    p.add_argument(
        "--state",
        choices=["disk", "memory"],
        default="disk",
        help="disk: RocksDB under $TOKENLEDGER_HOME/state, a restart replays only "
        "the changelog tail (default); memory: replay the whole changelog",
    )
    p.add_argument(
        "--dedup-hours",
        type=float,
        default=48.0,
        help="hours an event_id is remembered after the worker first sees it, "
        "however old the event (48); ~120 bytes on disk per event in that window",
    )
    p.add_argument(
        "--signal-heartbeat",
        type=float,
        default=10.0,
        help="seconds between re-publishing every warn and block state with a new "
        "issue time (10): a replayed old signal stands at most this long",
    )
    p = add("sink", cmd_sink, "run the ClickHouse sink (every topic into its table)")
    p.add_argument("--max-rows", type=int, default=5000, help="rows per INSERT batch")
    p.add_argument("--max-wait", type=float, default=1.0, help="seconds before a batch is flushed")
    p = add("notify", cmd_notify, "deliver alerts to webhook, Slack, PagerDuty, Alertmanager")
    p.add_argument("--retries", type=int, default=5, help="attempts per receiver (5)")
    p.add_argument(
        "--resend-interval",
        type=float,
        default=60.0,
        help="seconds between re-sends of firing alerts to Alertmanager; each "
        "carries endsAt 4 intervals ahead (60)",
    )
    p.add_argument(
        "--backoff",
        type=float,
        default=0.5,
        help="seconds before the 2nd attempt, doubled after each (0.5)",
    )

"""The developer stack: tiktoken ranks and Kafka jars, the local broker, up and down."""

from __future__ import annotations

import argparse

from tokenledger.streams.cli.admin import cmd_kafka_acls, cmd_migrate, cmd_topics
from tokenledger.streams.cli.base import Add, log
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError
from tokenledger.streams.local.broker import LocalKafka
from tokenledger.streams.redact import redact_dsn


def _local_kafka(settings: Settings) -> LocalKafka:
    return LocalKafka(
        settings.home / "kafka",
        settings.cache,
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
    )


def _require_local(settings: Settings) -> None:
    if not settings.kafka_is_local:
        raise UserError(
            f"TOKENLEDGER_KAFKA={settings.kafka} points at an external broker; "
            "`tokenledger kafka` manages only the local one (unset TOKENLEDGER_KAFKA)"
        )


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.streams.local import tiktoken_ranks as setup_tiktoken

    if not 1 <= args.timeout <= 3600:
        raise UserError("--timeout must be 1 to 3600 seconds")
    if args.only in (None, "tiktoken"):
        where = setup_tiktoken.install(settings.cache / "tiktoken", log.info, args.timeout)
        print(f"tiktoken ranks: {where}")
    if args.only in (None, "kafka"):
        local = _local_kafka(settings)
        print(f"kafka jars: {local.fetch(progress=log.info)}")
    return 0


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "acls":
        return cmd_kafka_acls(args, settings)
    if any(getattr(args, name, None) for name in ("apply", "principal", "component")):
        raise UserError("--apply, --principal and --component go with `kafka acls`")
    _require_local(settings)
    local = _local_kafka(settings)
    if args.action == "start":
        started = local.start(progress=log.info)
        pid = local.status().pid
        verb = "started" if started else "already running"
        print(f"kafka {verb}: {local.bootstrap} (pid {pid}, logs {local.log_file})")
    elif args.action == "stop":
        print("kafka stopped" if local.stop() else "kafka is not running")
    elif args.action == "fetch":
        print(f"kafka jars: {local.fetch(progress=log.info)}")
    else:
        status = local.status()
        if not status.running:
            print(f"kafka is not running (would listen on {local.bootstrap})")
            return 1
        print(f"kafka running: {status.bootstrap} (pid {status.pid}, data {local.data_dir})")
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Start the local stack (broker, topics, ClickHouse schema) and say where it is."""
    if settings.kafka_is_local:
        cmd_kafka(argparse.Namespace(action="start"), settings)
    cmd_topics(
        argparse.Namespace(action="create", partitions=None, replication_factor=None), settings
    )
    cmd_migrate(argparse.Namespace(database=None, status=False), settings)
    print(f"\nKafka:      {settings.kafka}")
    print(
        f"ClickHouse: {redact_dsn(settings.clickhouse)} (database {settings.clickhouse_database})"
    )
    print(f"State:      {settings.home}")
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.kafka_is_local:
        print(f"nothing to stop: Kafka is external ({settings.kafka})")
        return 0
    return cmd_kafka(argparse.Namespace(action="stop"), settings)


def register(add: Add) -> None:
    p = add("setup", cmd_setup, "install tiktoken ranks and the Kafka jars (idempotent)")
    p.add_argument("--only", choices=["tiktoken", "kafka"])
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds the tiktoken download may take (300)"
    )
    p = add(
        "kafka",
        cmd_kafka,
        "manage the local Kafka broker (KRaft, 127.0.0.1); print or "
        "apply the ACLs of each component on any cluster (acls)",
    )
    p.add_argument("action", choices=["start", "stop", "status", "fetch", "acls"])
    p.add_argument(
        "--apply",
        action="store_true",
        help="acls: create them with the admin client (TOKENLEDGER_KAFKA_OPT_* of an "
        "admin principal) instead of printing kafka-acls.sh lines",
    )
    p.add_argument(
        "--principal",
        action="append",
        metavar="COMPONENT=User:NAME",
        help="acls: the principal of a component (default User:tokenledger-COMPONENT)",
    )
    p.add_argument(
        "--component", action="append", help="acls: only this component (repeat; default all)"
    )
    add("up", cmd_up, "start the local stack: broker, topics, ClickHouse schema")
    add("down", cmd_down, "stop the local broker")

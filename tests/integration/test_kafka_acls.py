"""Least privilege on a real broker: SASL/SCRAM with Kafka's standard authorizer, one
principal per component, the ACLs `tokenledger kafka acls --apply` creates. A gateway reads
signals and can write neither signals nor budgets; a service writes requests, usage and
outcomes and reads nothing; the worker, sink, notifier and edge run the pipeline end to end,
each as itself, and no password reaches a log."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from tests.helpers import factories
from tests.helpers.cli import TOKENLEDGER, one_line_error, tl
from tests.helpers.edge import served
from tests.helpers.pricing_oracle import expected_cost
from tests.helpers.secure import Secured, SecureKafka, secured
from tests.helpers.waiting import wait_for, wait_value
from tokenledger.contract import topics
from tokenledger.contract.common import format_usd
from tokenledger.guard import BudgetGuard
from tokenledger.ledger import Emittable, Ledger, TopicNames
from tokenledger.streams.local.processes import Supervisor

pytestmark = pytest.mark.integration

REFUSED = "TOPIC_AUTHORIZATION_FAILED"
_quiet = logging.getLogger("tests.kafka_acls.client")
_quiet.propagate = False  # refusals are expected here; librdkafka logs each


@pytest.fixture
def space(sasl_kafka: SecureKafka, tmp_path: Path) -> Secured:
    return secured(sasl_kafka, tmp_path / "home")


def client(kafka: SecureKafka, who: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": kafka.bootstrap, **kafka.options(who), "logger": _quiet, **extra}


def produce_as(kafka: SecureKafka, who: str, topic: str, value: bytes, key: bytes) -> list[str]:
    """One record as ``who`` (not idempotent, so a refusal names the topic): its delivery
    result, "delivered" or the error's name."""
    results: list[str] = []
    producer = Producer(client(kafka, who, **{"message.timeout.ms": 15_000}))
    producer.produce(
        topic,
        value,
        key,
        on_delivery=lambda err, _: results.append(err.name() if err else "delivered"),
    )
    assert producer.flush(30) == 0
    return results


def read_as(kafka: SecureKafka, who: str, topic: str) -> tuple[list[bytes], set[str]]:
    """Every committed record of ``topic`` as ``who`` (values) up to its end, and the errors
    seen; a refusal ends the reading."""
    settings = {
        "group.id": f"tokenledger-guard-{who}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    }
    consumer = Consumer(client(kafka, who, **settings))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
    values: list[bytes] = []
    errors: set[str] = set()
    ended: set[int | None] = set()
    deadline = time.monotonic() + 30
    try:
        while ended != {0, 1} and REFUSED not in errors and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.2):
                err = m.error()
                if err is None:
                    values.append(m.value() or b"")
                elif err.code() == KafkaError._PARTITION_EOF:
                    ended.add(m.partition())
                else:
                    errors.add(err.name())
    finally:
        consumer.close()
    assert ended == {0, 1} or REFUSED in errors, f"{topic} not read to its end: {errors}"
    return values, errors


def test_acls_are_applied_by_the_admin_only(space: Secured) -> None:
    lines = space.applied.splitlines()
    assert lines[0] == " 12 ACL(s) for worker (User:tokenledger-worker)"
    assert lines[-1] == f"applied 41 ACL(s) on {space.kafka.bootstrap}"
    one_line_error(
        tl(space.env("gateway"), "kafka", "acls", "--apply"), 2, "not allowed to create ACLs"
    )
    printed = tl(space.env("admin"), "kafka", "acls")
    assert printed.returncode == 0, printed.stderr
    assert sum(line.count("--operation") for line in printed.stdout.splitlines()) == 41
    for password in space.kafka.passwords.values():
        assert password not in printed.stdout + printed.stderr + space.applied


def test_gateway_reads_signals_but_cannot_write_signals_or_budgets(space: Secured) -> None:
    kafka, signals, budgets = space.kafka, space.topic(topics.SIGNALS), space.topic(topics.BUDGETS)
    block = factories.signal(reason="daily limit $50.00 reached").model_dump_json().encode()
    assert produce_as(kafka, "admin", signals, block, b"tenant/acme") == ["delivered"]

    with BudgetGuard(
        bootstrap=kafka.bootstrap, topic=signals, kafka_config=kafka.options("gateway")
    ) as guard:
        assert guard.wait_ready(60)
        decision = guard.check("acme")
    assert (decision.allowed, decision.state, decision.scope) == (False, "block", "tenant/acme")

    allow = factories.signal(state="allow", reason="forged").model_dump_json().encode()
    assert produce_as(kafka, "gateway", signals, allow, b"tenant/acme") == [REFUSED]
    budget = json.dumps({"tenant_id": "acme", "limit_nusd": 10**15}).encode()
    assert produce_as(kafka, "gateway", budgets, budget, b"tenant/acme") == [REFUSED]
    assert read_as(kafka, "admin", signals) == ([block], set())
    assert read_as(kafka, "admin", budgets) == ([], set())


def test_service_writes_requests_usage_outcomes_and_nothing_else(
    space: Secured, tmp_path: Path
) -> None:
    kafka = space.kafka
    names = TopicNames(
        requests=space.topic(topics.REQUESTS),
        usage=space.topic(topics.USAGE),
        outcomes=space.topic(topics.OUTCOMES),
    )
    events: list[Emittable] = [factories.request(), factories.usage(), factories.outcome()]
    ledger = Ledger(
        "support-bot",
        bootstrap=kafka.bootstrap,
        topics=names,
        kafka_config=kafka.options("service"),
        spill_dir=tmp_path / "spill",
    )
    for event in events:
        ledger.emit(event)
    assert ledger.flush(30)
    stats = ledger.stats()
    ledger.close()
    assert (stats["delivered"], stats["spilled"]) == (3, 0)
    for topic, event in zip((names.requests, names.usage, names.outcomes), events, strict=True):
        values, _ = read_as(kafka, "admin", topic)
        assert [json.loads(v)["event_id"] for v in values] == [event.event_id]

    values, errors = read_as(kafka, "service", names.usage)
    assert (values, REFUSED in errors) == ([], True)
    forged = factories.signal(state="allow").model_dump_json().encode()
    assert produce_as(kafka, "service", space.topic(topics.SIGNALS), forged, b"tenant/acme") == [
        REFUSED
    ]
    assert produce_as(kafka, "service", space.topic(topics.BUDGETS), b"{}", b"tenant/acme") == [
        REFUSED
    ]


def committed_as_admin(kafka: SecureKafka, group: str, topic: str) -> int:
    consumer = Consumer(client(kafka, "admin", **{"group.id": group}))
    try:
        done = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        return sum(max(tp.offset, 0) for tp in done)
    finally:
        consumer.close()


def stored(env: dict[str, str]) -> list[int]:
    """What the sink stored (read in a process of its own: one process per data path)."""
    script = (
        "import json, os; from tokenledger.streams.sink.client import get_client;"
        "c = get_client(os.environ['TOKENLEDGER_CLICKHOUSE'], 'tokenledger');"
        "q = lambda s: int(c.command(s));"
        "print(json.dumps([q('SELECT count() FROM usage_events FINAL'),"
        " q('SELECT sum(cost_nusd) FROM usage_events FINAL'),"
        " q(\"SELECT count() FROM signals WHERE state = 'block' AND scope = 'tenant/acme'\") > 0,"
        " q('SELECT count() FROM alerts')]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_every_component_runs_end_to_end_as_itself(space: Secured, tmp_path: Path) -> None:
    """As deployed: each component its own principal, budgets and signals signed by the
    operator's and the worker's keys, every reader holding the public keys only."""
    kafka = space.kafka
    writers = {who: tmp_path / f"{who}.pem" for who in ("operator", "worker")}
    for key in writers.values():
        assert tl(space.env("admin"), "keys", "generate", "--out", str(key)).returncode == 0
    ring = tl(space.env("admin"), "keys", "public", *map(str, writers.values())).stdout.strip()

    def env(who: str, **extra: str) -> dict[str, str]:
        if who in writers:
            extra["TOKENLEDGER_SIGNING_KEY_FILE"] = str(writers[who])
        return space.env(who, TOKENLEDGER_PUBLIC_KEYS=ring, **extra)

    set_budget = tl(env("operator"), "budget", "set", "--tenant", "acme", "--limit-usd", "0.001")
    assert set_budget.stdout == "set tenant/acme: $0.0010 per day (UTC), warn at 50%, 80%\n"

    sink_env = env("sink", TOKENLEDGER_CLICKHOUSE=f"chdb://{tmp_path / 'ch'}")
    alerts_file = tmp_path / "alerts.jsonl"
    logs: dict[str, Path] = {}
    with Supervisor(tmp_path, {}, grace_s=30) as children:  # each environment is whole
        for name, environment, args in (
            ("worker", env("worker"), ["worker", "--instance", "w1"]),
            ("sink", sink_env, ["sink", "--max-wait", "0.2"]),
            ("notifier", env("notifier", TOKENLEDGER_NOTIFY_FILE=str(alerts_file)), ["notify"]),
        ):
            child = children.start(name, [TOKENLEDGER, *args], env=environment, append=True)
            logs[name] = child.log

        usage = factories.usage(tenant_id="acme")
        cost = expected_cost(usage)
        attrs = {
            "type": "dev.tokenledger.usage.v1",
            "source": "tests/acls",
            "id": "ce-1",
            "time": usage.ts,
            "datacontenttype": "application/json",
        }
        message = to_structured(
            CloudEvent(attrs, json.loads(usage.model_dump_json())), JSONFormat()
        )
        with served(env("edge"), tmp_path) as edge:
            logs["edge"] = edge.log
            answer = edge.call("POST", "/v1/events", message.body, message.headers)
            assert (answer.status, answer.json()) == (200, {"accepted": 1, "rejected": []})
            check = wait_value(
                lambda: edge.call("GET", "/v1/check?tenant=acme").json(),
                lambda body: body["state"] == "block",
                "the worker's block signal at the edge",
                timeout=120,
            )
            reason = (
                f"budget exhausted: daily limit $0.0010 reached ({format_usd(cost)} of $0.0010)"
            )
            assert check == {
                "allowed": False,
                "state": "block",
                "reason": reason,
                "scope": "tenant/acme",
                "degraded": False,
            }

        alert = factories.alert()
        assert produce_as(
            kafka, "admin", space.topic(topics.ALERTS), alert.model_dump_json().encode(), b"acme"
        ) == ["delivered"]
        wait_for(
            lambda: alerts_file.exists() and alerts_file.read_text().count("\n") == 1,
            60,
            "the notifier to deliver the alert",
        )
        assert json.loads(alerts_file.read_text())["fingerprint"] == alert.fingerprint

        sink_group = space.topic("tokenledger-sink")
        wait_for(
            lambda: (
                committed_as_admin(kafka, sink_group, space.topic(topics.USAGE_ENRICHED)) == 1
                and committed_as_admin(kafka, sink_group, space.topic(topics.ALERTS)) == 1
            ),
            120,
            "the sink to store the enriched usage and the alert",
        )
        codes = children.stop("worker", "sink", "notifier")
    assert codes == {"worker": 0, "sink": 0, "notifier": 0}, logs
    assert stored(sink_env) == [1, cost, True, 1]
    for name, log in logs.items():
        text = log.read_text()
        for who, password in kafka.passwords.items():
            assert password not in text, f"the {who} password is in the {name} log"

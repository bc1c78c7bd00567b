"""The Kafka ACLs each tokenledger component needs, and nothing more (`tokenledger kafka
acls`): printed as kafka-acls.sh command lines, or applied with the admin client.

One principal per component. Topics and group names follow TOPIC_NAMESPACE. Reading a
topic or writing to it implies describing it; reading as a consumer group also needs the
group (Read: it commits offsets), and a reader that only assigns partitions needs Describe
on its group (librdkafka looks up the group's coordinator). An idempotent producer needs
nothing beyond Write on a topic (Kafka 3.0+). The worker's transactions need Write on its
transactional ids (one per ``--instance``, hence a prefix). Nobody but the operator writes
budgets; nobody but the worker writes signals. Topics are created by the operator
(`tokenledger topics create`); components only check them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tokenledger.contract import topics as t
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import ServiceUnavailableError, UserError

Kind = Literal["topic", "group", "transactional-id"]
Operation = Literal["Read", "Write", "Describe", "Create", "DescribeConfigs"]


@dataclass(frozen=True)
class Grant:
    """Allow ``operations`` on one resource: a name, or every name starting with it."""

    kind: Kind
    name: str
    operations: tuple[Operation, ...]
    prefixed: bool = False


@dataclass(frozen=True)
class Component:
    name: str
    does: str
    """What it does with Kafka, in a few words (printed above its ACLs)."""
    grants: tuple[Grant, ...]


COMPONENTS = ("worker", "sink", "notifier", "edge", "gateway", "service", "operator")
"""In the order an event travels, then who sets budgets."""
PRINCIPAL = re.compile(r"[A-Za-z][A-Za-z0-9]*:\S+")


def default_principal(component: str) -> str:
    return f"User:tokenledger-{component}"


def components(settings: Settings) -> list[Component]:
    """Every component with its grants, names in ``settings``' namespace."""

    def topics(operations: tuple[Operation, ...], *names: str) -> list[Grant]:
        return [Grant("topic", settings.topic(n), operations) for n in names]

    def group(name: str, operation: Operation, prefixed: bool = False) -> Grant:
        return Grant("group", settings.topic(name), (operation,), prefixed)

    read: tuple[Operation, ...] = ("Read",)
    write: tuple[Operation, ...] = ("Write",)
    worker = (
        *topics(read, t.USAGE, t.REQUESTS, t.BUDGETS),
        *topics(("Read", "Write"), t.WORKER_CHANGELOG),
        *topics(write, t.USAGE_ENRICHED, t.SIGNALS, t.ALERTS, t.DLQ),
        group("tokenledger-worker", "Read", prefixed=True),  # its group and -restore
        group("tokenledger-budget-feed", "Describe"),
        Grant("transactional-id", settings.topic("tokenledger-worker-"), write, prefixed=True),
    )
    sink = (
        *topics(read, t.USAGE_ENRICHED, t.REQUESTS, t.OUTCOMES, t.SIGNALS, t.ALERTS, t.DLQ),
        *topics(write, t.DLQ),
        group("tokenledger-sink", "Read"),
    )
    notifier = (
        *topics(read, t.ALERTS),
        *topics(write, t.DLQ),
        group("tokenledger-notifier", "Read", prefixed=True),  # its group and -restore
    )
    edge = (
        *topics(write, t.REQUESTS, t.USAGE, t.OUTCOMES),
        *topics(read, t.SIGNALS),
        *topics(("Read", "Write"), t.CLAIMS),
        # one group per edge process (signals), and tokenledger-edge-claims shared by all
        group("tokenledger-edge-", "Read", prefixed=True),
    )
    # a BudgetGuard's group (tokenledger-guard-<id>, not namespaced) only finds the
    # coordinator: the guard assigns partitions and commits nothing
    guard_group = Grant("group", "tokenledger-guard-", ("Describe",), prefixed=True)
    gateway = (*topics(read, t.SIGNALS), guard_group)
    service = tuple(topics(write, t.REQUESTS, t.USAGE, t.OUTCOMES))
    operator = (
        *topics(("Read", "Write"), t.BUDGETS),
        group("tokenledger-budget-feed", "Describe"),
        Grant(
            "topic", settings.topic("tokenledger."), ("Create", "Describe", "DescribeConfigs"), True
        ),
    )
    return [
        Component(
            "worker", "prices usage in transactions; writes enriched usage, signals, alerts", worker
        ),
        Component("sink", "stores every topic in ClickHouse", sink),
        Component("notifier", "delivers alerts", notifier),
        Component("edge", "ingests events over HTTP; answers checks from signals", edge),
        Component("gateway", "a BudgetGuard: reads signals", gateway),
        Component("service", "the SDK's Ledger: writes requests, usage, outcomes", service),
        Component("operator", "sets budgets (`tokenledger budget`), creates topics", operator),
    ]


def principals(pairs: Iterable[str]) -> dict[str, str]:
    """``--principal COMPONENT=TYPE:NAME`` options over the defaults (User:tokenledger-X)."""
    chosen = {c: default_principal(c) for c in COMPONENTS}
    for pair in pairs:
        component, sep, principal = pair.partition("=")
        if not sep or component not in COMPONENTS or not PRINCIPAL.fullmatch(principal):
            raise UserError(
                f"--principal {pair!r}: write COMPONENT=User:NAME, COMPONENT one of "
                f"{', '.join(COMPONENTS)}"
            )
        chosen[component] = principal
    return chosen


def selected(settings: Settings, names: Iterable[str]) -> list[Component]:
    wanted = set(names)
    unknown = wanted - set(COMPONENTS)
    if unknown:
        raise UserError(f"--component {sorted(unknown)[0]!r}: use one of {', '.join(COMPONENTS)}")
    return [c for c in components(settings) if not wanted or c.name in wanted]


def commands(settings: Settings, chosen: list[Component], who: Mapping[str, str]) -> list[str]:
    """kafka-acls.sh lines an operator can run; the admin's credentials stay in a file the
    lines only name (``admin.properties``), so no secret is printed."""
    lines = [
        f"# tokenledger ACLs for {settings.kafka} (topic namespace: "
        f"{settings.topic_namespace or 'none'})",
        "# admin.properties holds the admin principal's client settings, e.g.",
        "#   security.protocol=SASL_SSL",
        "#   sasl.mechanism=SCRAM-SHA-512",
        "#   sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
        'required username="<admin>" password="<admin-password>";',
    ]
    base = [
        "kafka-acls.sh",
        "--bootstrap-server",
        settings.kafka,
        "--command-config",
        "admin.properties",
        "--add",
    ]
    for component in chosen:
        principal = who[component.name]
        lines += ["", f"# {component.name} ({principal}): {component.does}"]
        for grant in component.grants:
            args = [*base, "--allow-principal", principal]
            for operation in grant.operations:
                args += ["--operation", operation]
            args += [f"--{grant.kind}", grant.name]
            if grant.prefixed:
                args += ["--resource-pattern-type", "prefixed"]
            lines.append(shlex.join(args))
    return lines


def bindings(chosen: list[Component], who: Mapping[str, str]) -> list[Any]:
    """The same grants as confluent-kafka AclBindings (host ``*``, allow)."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    kinds = {
        "topic": ResourceType.TOPIC,
        "group": ResourceType.GROUP,
        "transactional-id": ResourceType.TRANSACTIONAL_ID,
    }
    operations = {
        "Read": AclOperation.READ,
        "Write": AclOperation.WRITE,
        "Describe": AclOperation.DESCRIBE,
        "Create": AclOperation.CREATE,
        "DescribeConfigs": AclOperation.DESCRIBE_CONFIGS,
    }
    out = []
    for component in chosen:
        for grant in component.grants:
            pattern = (
                ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
            )
            for operation in grant.operations:
                out.append(
                    AclBinding(
                        kinds[grant.kind],
                        grant.name,
                        pattern,
                        who[component.name],
                        "*",
                        operations[operation],
                        AclPermissionType.ALLOW,
                    )
                )
    return out


def apply(settings: Settings, chosen: list[Component], who: Mapping[str, str]) -> int:
    """Create the ACLs (idempotent: an existing ACL stays as it is); how many."""
    from confluent_kafka import KafkaError, KafkaException

    from tokenledger.streams.admin.topics import admin_client, require_broker

    require_broker(settings.kafka)
    wanted = bindings(chosen, who)
    admin = admin_client(settings.kafka)  # held until the futures are done
    try:
        for future in admin.create_acls(wanted, request_timeout=30).values():
            future.result(timeout=60)
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() == KafkaError.SECURITY_DISABLED:
            raise UserError(
                f"the broker at {settings.kafka} has no authorizer (authorizer.class.name): "
                "there are no ACLs to apply; print them with `tokenledger kafka acls`"
            ) from None
        if err.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED:
            raise UserError(
                "not allowed to create ACLs: run `kafka acls --apply` with an admin principal's "
                "TOKENLEDGER_KAFKA_OPT_* settings (it needs Alter on the cluster)"
            ) from None
        raise ServiceUnavailableError(f"cannot create the ACLs: {err.str()}") from None
    return len(wanted)

"""`tokenledger kafka acls`: the least-privilege ACLs of each component, as kafka-acls.sh
lines an operator can run (no secret in them) and as admin-client bindings."""

from __future__ import annotations

import shlex

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from tests.helpers.cli import one_line_error, tl
from tokenledger.streams.admin import acls
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError

HEAD = "kafka-acls.sh --bootstrap-server k1:9093 --command-config admin.properties --add"


def test_service_and_gateway_lines_in_a_namespace() -> None:
    settings = Settings.from_env(
        {"TOKENLEDGER_KAFKA": "k1:9093", "TOKENLEDGER_TOPIC_NAMESPACE": "prod"}
    )
    who = acls.principals(["service=User:svc-checkout"])
    lines = acls.commands(settings, acls.selected(settings, ["gateway", "service"]), who)
    svc, gw = "--allow-principal User:svc-checkout", "--allow-principal User:tokenledger-gateway"
    assert lines[0] == "# tokenledger ACLs for k1:9093 (topic namespace: prod)"
    assert lines[5:] == [
        "",
        "# gateway (User:tokenledger-gateway): a BudgetGuard: reads signals",
        f"{HEAD} {gw} --operation Read --topic prod.tokenledger.signals.v1",
        f"{HEAD} {gw} --operation Describe --group tokenledger-guard- "
        "--resource-pattern-type prefixed",
        "",
        "# service (User:svc-checkout): the SDK's Ledger: writes requests, usage, outcomes",
        f"{HEAD} {svc} --operation Write --topic prod.tokenledger.requests.v1",
        f"{HEAD} {svc} --operation Write --topic prod.tokenledger.usage.v1",
        f"{HEAD} {svc} --operation Write --topic prod.tokenledger.outcomes.v1",
    ]
    for line in lines[6:]:
        assert not line or line.startswith("#") or shlex.split(line)[0] == "kafka-acls.sh"


def test_who_may_write_what() -> None:
    """Signals are written by the worker alone, budgets by the operator alone; services and
    gateways never read usage or write state."""
    settings = Settings.from_env({})
    writers: dict[str, set[str]] = {}
    readers: dict[str, set[str]] = {}
    for component in acls.components(settings):
        for grant in component.grants:
            if grant.kind == "topic" and not grant.prefixed:
                if "Write" in grant.operations:
                    writers.setdefault(grant.name, set()).add(component.name)
                if "Read" in grant.operations:
                    readers.setdefault(grant.name, set()).add(component.name)
    assert writers["tokenledger.signals.v1"] == {"worker"}
    assert writers["tokenledger.budgets.v1"] == {"operator"}
    assert writers["tokenledger.usage.v1"] == {"edge", "service"}
    assert readers["tokenledger.usage.v1"] == {"worker"}
    assert readers["tokenledger.signals.v1"] == {"edge", "gateway", "sink"}
    assert writers["tokenledger.worker.changelog.v1"] == {"worker"}
    for topic, who in readers.items():
        if topic != "tokenledger.signals.v1":
            assert who.isdisjoint({"service", "gateway"}), topic


def test_bindings_match_the_printed_lines() -> None:
    settings = Settings.from_env({})
    chosen = acls.selected(settings, ["worker"])
    who = acls.principals([])
    bound = {
        (b.restype, b.name, b.resource_pattern_type, b.operation)
        for b in acls.bindings(chosen, who)
    }
    assert len(bound) == 12
    assert {b.principal for b in acls.bindings(chosen, who)} == {"User:tokenledger-worker"}
    assert (
        ResourceType.TRANSACTIONAL_ID,
        "tokenledger-worker-",
        ResourcePatternType.PREFIXED,
        AclOperation.WRITE,
    ) in bound
    assert (
        ResourceType.GROUP,
        "tokenledger-worker",
        ResourcePatternType.PREFIXED,
        AclOperation.READ,
    ) in bound
    printed = [line for line in acls.commands(settings, chosen, who) if line.startswith("kafka")]
    assert sum(line.count("--operation") for line in printed) == 12


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["worker"], "--principal 'worker': write COMPONENT=User:NAME"),
        (["router=User:x"], "--principal 'router=User:x': write COMPONENT=User:NAME"),
        (["sink=bob"], "--principal 'sink=bob': write COMPONENT=User:NAME"),
    ],
)
def test_bad_principals_are_refused(pairs: list[str], message: str) -> None:
    with pytest.raises(UserError) as refused:
        acls.principals(pairs)
    assert str(refused.value) == (
        f"{message}, COMPONENT one of worker, sink, notifier, edge, gateway, service, operator"
    )


def test_cli_prints_without_a_broker_and_refuses_mistakes(cli_env: dict[str, str]) -> None:
    hidden = "s3cret-admin-password"
    env = {**cli_env, "TOKENLEDGER_KAFKA": "k1:9093", "TOKENLEDGER_KAFKA_OPT_SASL_PASSWORD": hidden}
    done = tl(env, "kafka", "acls", "--component", "service")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"{HEAD} --allow-principal User:tokenledger-service --operation Write "
        "--topic tokenledger.outcomes.v1"
    )
    assert hidden not in done.stdout + done.stderr
    one_line_error(
        tl(env, "kafka", "acls", "--component", "router"),
        2,
        "--component 'router': use one of worker, sink, notifier",
    )
    one_line_error(
        tl(env, "kafka", "start", "--apply"),
        2,
        "--apply, --principal and --component go with `kafka acls`",
    )

"""The SDK follows TOKENLEDGER_TOPIC_NAMESPACE like the workers do: a service started in
the workers' environment writes and reads their topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenledger import BudgetGuard, Ledger, TopicNames
from tokenledger.contract import topics
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError
from tokenledger.streams.local.broker import free_port


def test_the_ledger_and_the_guard_default_to_the_namespaced_topics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOKENLEDGER_TOPIC_NAMESPACE", "staging")
    ledger = Ledger("svc", bootstrap=f"127.0.0.1:{free_port()}", spill_dir=tmp_path)
    ledger.close(timeout=1)
    assert ledger.topics == TopicNames(
        requests="staging.tokenledger.requests.v1",
        usage="staging.tokenledger.usage.v1",
        outcomes="staging.tokenledger.outcomes.v1",
    )
    assert BudgetGuard().topic == BudgetGuard().book.topic == "staging.tokenledger.signals.v1"
    workers = Settings.from_env({"TOKENLEDGER_TOPIC_NAMESPACE": "staging"})
    assert (ledger.topics.usage, BudgetGuard().topic) == (
        workers.topic(topics.USAGE),
        workers.topic(topics.SIGNALS),
    )
    assert BudgetGuard(topic="mine").topic == "mine"  # an explicit name wins

    monkeypatch.delenv("TOKENLEDGER_TOPIC_NAMESPACE")  # no namespace: the plain names
    plain = TopicNames(topics.REQUESTS, topics.USAGE, topics.OUTCOMES)
    assert TopicNames.in_namespace() == TopicNames() == plain
    assert BudgetGuard().topic == topics.SIGNALS


def test_a_namespace_no_topic_name_can_hold_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKENLEDGER_TOPIC_NAMESPACE", "team a")
    said = "TOKENLEDGER_TOPIC_NAMESPACE='team a' is not valid; use letters, digits, . _ -"
    with pytest.raises(ValueError) as sdk:
        BudgetGuard()
    with pytest.raises(UserError) as server:
        Settings.from_env()
    assert str(sdk.value) == str(server.value) == said

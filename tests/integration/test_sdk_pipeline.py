"""The SDK with a real worker on the real broker, both in one topic namespace: events land
where the worker reads, a guard on a missing topic says so, and bad arguments reach the
DLQ through the worker with their raw bytes and reason."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.kafka_io import read_committed
from tests.helpers.settings import isolated
from tests.helpers.waiting import wait_for
from tests.helpers.workers import run_worker
from tokenledger import BudgetGuard, Decision, Ledger
from tokenledger.contract import topics
from tokenledger.contract.messages import DlqRecord, EnrichedUsage
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.worker import service as worker

pytestmark = pytest.mark.integration

IN_PER_TOKEN, OUT_PER_TOKEN = 2500, 10_000  # gpt-4o list price, nano-USD per token


@pytest.fixture
def settings(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A namespace of this test's own, set in the environment as a service would see it."""
    chosen = isolated(kafka_bootstrap, 1)
    monkeypatch.setenv("TOKENLEDGER_TOPIC_NAMESPACE", chosen.topic_namespace)
    return chosen


@pytest.fixture
def engine(settings: Settings) -> Iterator[worker.TransactionalEngine]:
    with run_worker(settings, "w1") as running:
        yield running


def counted(engine: worker.TransactionalEngine) -> dict[str, int]:
    return {
        k: v
        for k, v in engine.counters().items()
        if k in ("reserved", "enriched") or k.startswith("dlq.")
    }


def test_in_a_namespace_the_worker_counts_what_the_sdk_sends(
    settings: Settings, engine: worker.TransactionalEngine, tmp_path: Path
) -> None:
    guard = BudgetGuard(bootstrap=settings.kafka).start()
    with Ledger(
        "svc", bootstrap=settings.kafka, spill_dir=tmp_path, include_prompts=True
    ) as ledger:
        assert ledger.topics.usage == f"{settings.topic_namespace}.{topics.USAGE}"
        calls = []
        for i, prompt in enumerate(["hello", "ü" * 40_000, "bye"]):  # the long one is cut
            with ledger.track(
                tenant_id="acme", feature="answer", model="gpt-4o", provider="openai", prompt=prompt
            ) as call:
                call.record(input_tokens=1000 + i, output_tokens=100)
            calls.append(call)
        assert ledger.flush(30), ledger.stats()
        assert (ledger.stats()["delivered"], ledger.stats()["invalid_events"]) == (6, 0)
    enriched = [
        EnrichedUsage.model_validate_json(m.value())
        for m in read_committed(settings.kafka, settings.topic(topics.USAGE_ENRICHED), 3)
    ]
    assert sorted((e.request_id, e.cost_nusd) for e in enriched) == sorted(
        (c.request_id, (1000 + i) * IN_PER_TOKEN + 100 * OUT_PER_TOKEN) for i, c in enumerate(calls)
    )
    wait_for(lambda: counted(engine).get("reserved") == 3, 30, "three reservations")
    assert counted(engine) == {"reserved": 3, "enriched": 3}  # no DLQ: the prompt was cut
    assert guard.topic == settings.topic(topics.SIGNALS)
    assert guard.wait_ready(30) and guard.not_ready_reason() is None
    guard.close()


def test_a_guard_on_a_missing_topic_says_so_once_and_is_not_ready(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    topic = settings.topic(topics.SIGNALS)
    missing = f"the signals topic {topic!r} does not exist; failing closed"
    with caplog.at_level(logging.WARNING, logger="tokenledger.guard"):
        guard = BudgetGuard(bootstrap=settings.kafka, on_unavailable="closed").start()
        try:
            wait_for(lambda: guard.not_ready_reason() == missing, 30, "the missing topic")
            assert not guard.wait_ready(2.5)  # two more heartbeats, still no topic
            assert guard.check("acme") == Decision(False, "unavailable", missing, None, True)
            spec = next(t for t in topics.TOPICS if t.name == topics.SIGNALS)
            create_topics(
                settings.kafka, [topics.TopicSpec(topic, spec.compacted, spec.configs)], 1, 1
            )
            assert guard.wait_ready(30)
            assert guard.not_ready_reason() is None
        finally:
            guard.close()
    assert [r.getMessage() for r in caplog.records if r.name == "tokenledger.guard"] == [
        f"the signals topic {topic!r} does not exist: this guard is not ready and fails "
        "closed until it does (are TOKENLEDGER_TOPIC_NAMESPACE and topic= those of the "
        "workers?)"
    ]


def test_bad_arguments_reach_the_dlq_through_the_worker_with_raw_bytes_and_reason(
    settings: Settings, engine: worker.TransactionalEngine, tmp_path: Path
) -> None:
    dims: dict[str, Any] = {
        "tenant_id": "acme",
        "feature": "answer",
        "model": "gpt-4o",
        "provider": "openai",
    }
    with Ledger("svc", bootstrap=settings.kafka, spill_dir=tmp_path) as ledger:
        with ledger.track(**{**dims, "tenant_id": "acme corp"}) as spaced:
            spaced.record(input_tokens=10, output_tokens=5)
        with ledger.track(**{**dims, "feature": ""}) as empty:
            empty.record(input_tokens=10, output_tokens=5)
        with ledger.track(**dims, max_output_tokens=None) as unbounded:  # type: ignore[arg-type]
            unbounded.record(input_tokens=10, output_tokens=5)
        with ledger.track(**dims) as negative:
            negative.record(input_tokens=-1, output_tokens=5)
        with ledger.track(**dims) as good:
            good.record(input_tokens=10, output_tokens=5)
        assert ledger.flush(30), ledger.stats()
        assert ledger.stats()["invalid_events"] == 6
    dlq = [
        DlqRecord.model_validate_json(m.value())
        for m in read_committed(settings.kafka, settings.topic(topics.DLQ), 6)
    ]
    requests, usage = settings.topic(topics.REQUESTS), settings.topic(topics.USAGE)
    seen = []
    for d in dlq:
        raw = json.loads(base64.b64decode(d.raw_b64))  # the bytes the SDK sent
        key = base64.b64decode(d.key_b64 or "")
        seen.append(
            (
                raw["request_id"],
                d.source_topic,
                d.reason,
                d.detail,
                key,
                raw["tenant_id"],
                raw["feature"],
                raw.get("max_output_tokens"),
                raw.get("input_tokens"),
            )
        )
    spaced_id, empty_id = spaced.request_id, empty.request_id
    assert sorted(seen) == sorted(
        [
            (
                spaced_id,
                requests,
                "invalid_fields",
                "tenant_id: ' ' cannot be part of a name (letters, digits and . _ : @ + - only)",
                b"acme corp",
                "acme corp",
                "answer",
                0,
                None,
            ),
            (
                spaced_id,
                usage,
                "invalid_fields",
                "tenant_id: ' ' cannot be part of a name (letters, digits and . _ : @ + - only)",
                b"acme corp",
                "acme corp",
                "answer",
                None,
                10,
            ),
            (
                empty_id,
                requests,
                "invalid_fields",
                "feature: a name cannot be empty",
                b"acme",
                "acme",
                "",
                0,
                None,
            ),
            (
                empty_id,
                usage,
                "invalid_fields",
                "feature: a name cannot be empty",
                b"acme",
                "acme",
                "",
                None,
                10,
            ),
            (
                unbounded.request_id,
                requests,
                "invalid_fields",
                "max_output_tokens: Input should be a valid integer",
                b"acme",
                "acme",
                "answer",
                None,
                None,
            ),
            (
                negative.request_id,
                usage,
                "negative_tokens",
                "input_tokens: Input should be greater than or equal to 0",
                b"acme",
                "acme",
                "answer",
                None,
                -1,
            ),
        ]
    )
    enriched = read_committed(settings.kafka, settings.topic(topics.USAGE_ENRICHED), 2)
    assert sorted(EnrichedUsage.model_validate_json(m.value()).request_id for m in enriched) == (
        sorted([unbounded.request_id, good.request_id])
    )
    wait_for(lambda: counted(engine).get("reserved") == 2, 30, "two reservations")
    assert counted(engine) == {
        "reserved": 2,
        "enriched": 2,
        "dlq.invalid_fields": 5,
        "dlq.negative_tokens": 1,
    }

"""The usage worker on the real broker: validation, pricing, dedup, windows, exactly once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import factories
from tests.helpers.clock import recent
from tests.helpers.kafka_io import changelog_state, changelog_windows, produce, read_committed
from tests.helpers.pricing_oracle import expected_cost
from tests.helpers.settings import isolated
from tests.helpers.state_keys import scoped, unscoped
from tests.helpers.workers import run_worker
from tokenledger.contract import topics
from tokenledger.contract.messages import DlqRecord, EnrichedUsage, UsageEvent
from tokenledger.contract.topics import TOPICS, TopicSpec
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.worker import service as worker
from tokenledger.streams.worker.windows import window_start

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return isolated(kafka_bootstrap, 3)


@pytest.fixture
def running_worker(settings: Settings) -> Iterator[worker.TransactionalEngine]:
    with run_worker(settings, "w1") as engine:
        yield engine


def test_pipeline_counts_every_good_event_once_and_every_bad_one_in_the_dlq(
    settings: Settings, running_worker: worker.TransactionalEngine
) -> None:
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"]
    good = []
    for i in range(60):
        good.append(
            factories.usage(
                tenant_id=("acme", "globex")[i % 2],
                feature=("answer", "search")[i % 3 % 2],
                model=models[i % 3],
                provider="x",
                ts=base + timedelta(seconds=i),
                input_tokens=1000 + 37 * i,
                cached_input_tokens=(256 if i % 4 == 0 else 0),
                cache_write_tokens=(128 if i % 3 == 2 else 0),
                output_tokens=100 + i,
                reasoning_tokens=0,
                batch=(i % 5 == 0),
                idempotency_key=f"idem-{i}",
            )
        )
    cache_hit = factories.usage(tenant_id="acme", cache="exact", ts=base, idempotency_key="c1")
    carried = factories.usage(tenant_id="acme", cost_nusd=999, ts=base, idempotency_key="c2")
    unknown = factories.usage(
        tenant_id="globex", model="in-house-7b", ts=base, idempotency_key="c3"
    )
    retries = [
        factories.usage(
            tenant_id=g.tenant_id,
            idempotency_key=g.idempotency_key,
            attempt=2,
            ts=g.ts,
            model=g.model,
            provider=g.provider,
        )
        for g in good[:3]
    ]
    late = factories.usage(tenant_id="acme", ts=base - timedelta(minutes=30), idempotency_key="l1")
    bad: list[tuple[str, bytes]] = [
        ("malformed_json", b"{not json"),
        ("malformed_json", b"[" * 5000 + b"]" * 5000),
        ("invalid_fields", _mutate(good[0], input_tokens="many")),
        ("negative_tokens", _mutate(good[0], output_tokens=-5)),
        ("absurd_tokens", _mutate(good[0], input_tokens=10**12)),
        ("unknown_schema_version", _mutate(good[0], schema_version=7)),
        ("absurd_timestamp", _mutate(good[0], ts="2099-01-01T00:00:00Z")),
        ("absurd_timestamp", _mutate(good[0], ts="2001-01-01T00:00:00Z")),
        ("oversize", _mutate(good[0], error="x" * 70_000)),
        ("missing_tenant", _mutate(good[0], tenant_id=None)),
        ("missing_tenant", _mutate(good[0], tenant_id="")),
    ]
    names = {
        n: settings.topic(n)
        for n in (topics.USAGE, topics.USAGE_ENRICHED, topics.DLQ, topics.WORKER_CHANGELOG)
    }
    kept = good + [cache_hit, carried, unknown] + retries
    records = [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in kept]
    records += [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in good[10:15]]
    records += [(b"acme", late.model_dump_json().encode())]
    records += [(b"bad", raw) for _, raw in bad]
    produce(settings.kafka, names[topics.USAGE], records)

    enriched = [
        EnrichedUsage.model_validate_json(m.value())
        for m in read_committed(settings.kafka, names[topics.USAGE_ENRICHED], len(kept) + 1)
    ]
    dlq = [
        DlqRecord.model_validate_json(m.value())
        for m in read_committed(settings.kafka, names[topics.DLQ], len(bad))
    ]

    assert len(enriched) == len(kept) + 1  # the redeliveries are gone, the late one is kept
    by_id = {e.event_id: e for e in enriched}
    assert len(by_id) == len(enriched)
    for e in good + retries:
        assert by_id[e.event_id].cost_nusd == expected_cost(e), e.model
        assert by_id[e.event_id].cost_source == "table"
    assert sum(by_id[e.event_id].cost_nusd or 0 for e in good) == sum(map(expected_cost, good))
    assert [by_id[r.event_id].duplicate_generation for r in retries] == [True] * 3
    assert not any(by_id[e.event_id].duplicate_generation for e in good)
    hit = by_id[cache_hit.event_id]
    assert (hit.cost_nusd, hit.cost_source, hit.table_cost_nusd) == (
        0,
        "cache",
        expected_cost(cache_hit),
    )
    own = by_id[carried.event_id]  # the book's cost counts; the claim is kept beside it
    assert (own.cost_nusd, own.cost_source, own.cost_mismatch, own.reported_cost_nusd) == (
        expected_cost(carried),
        "table",
        True,
        999,
    )
    mystery = by_id[unknown.event_id]
    assert (mystery.cost_nusd, mystery.priced, mystery.cost_source) == (None, False, "unpriced")
    assert mystery.pricing_version.endswith(":unknown")
    assert by_id[late.event_id].late and not any(by_id[e.event_id].late for e in kept)
    for e in good:
        plain = e.model_copy(
            update={
                "cached_input_tokens": 0,
                "cache_write_tokens": 0,
                "batch": False,
                "model": "gpt-4o",
            }
        )
        assert by_id[e.event_id].counterfactual_cost_nusd == expected_cost(plain)

    assert Counter(d.reason for d in dlq) == Counter(reason for reason, _ in bad)
    assert all(d.source_topic == names[topics.USAGE] and d.raw_b64 for d in dlq)

    windows = changelog_windows(settings.kafka, names[topics.WORKER_CHANGELOG])
    counted = list(kept)  # not the late one, not the redeliveries
    for tenant in ("acme", "globex"):
        mine = [e for e in counted if e.tenant_id == tenant]
        priced = [c for e in mine if (c := by_id[e.event_id].cost_nusd) is not None]
        day = window_start(int(base.timestamp() * 1000), "day")
        assert windows[f"w:day:t={tenant}:{day}"] == (
            sum(priced),
            len(mine),
            len(mine) - len(priced),
        )
    minute_total = sum(v[0] for k, v in windows.items() if k.startswith("w:minute:t="))
    assert minute_total == sum(by_id[e.event_id].cost_nusd or 0 for e in counted)

    counters = running_worker.counters()
    assert counters["redelivered"] == 5 and counters["late"] == 1
    assert counters["duplicate_generation"] == 3 and counters["cost_mismatch"] == 1
    assert sum(v for k, v in counters.items() if k.startswith("dlq.")) == len(bad)


def _mutate(event: UsageEvent, **changes: Any) -> bytes:
    return factories.mutated_json(event, event_id=uuid.uuid4().hex, **changes)


@pytest.fixture
def one_partition(kafka_bootstrap: str) -> Settings:
    """Every tenant on one partition: one worker task sees all their ids."""
    return isolated(kafka_bootstrap, 1)


def send(settings: Settings, events: list[UsageEvent]) -> None:
    produce(
        settings.kafka,
        settings.topic(topics.USAGE),
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
    )


def enriched_records(settings: Settings, n: int) -> list[EnrichedUsage]:
    """Every committed enriched record once at least ``n`` are (and a second for more)."""
    return [
        EnrichedUsage.model_validate_json(m.value())
        for m in read_committed(settings.kafka, settings.topic(topics.USAGE_ENRICHED), n)
    ]


def test_two_tenants_on_one_partition_keep_their_own_ids(one_partition: Settings) -> None:
    settings, base = one_partition, recent()
    same = {"event_id": "billing/evt-1", "idempotency_key": "order-42", "ts": base}
    acme, globex = (
        factories.usage(tenant_id="acme", **same),
        factories.usage(tenant_id="globex", **same),
    )
    retry = factories.usage(
        tenant_id="globex", event_id="billing/evt-2", idempotency_key="order-42", ts=base
    )
    with run_worker(settings, "w1") as engine:
        send(settings, [acme, globex, acme, globex, retry])  # two redeliveries, one retry
        got = enriched_records(settings, 3)
        counters = engine.counters()
    call = expected_cost(acme)
    assert [(e.tenant_id, e.event_id, e.cost_nusd, e.duplicate_generation) for e in got] == [
        ("acme", "billing/evt-1", call, False),
        ("globex", "billing/evt-1", call, False),
        ("globex", "billing/evt-2", call, True),
    ]
    windows = changelog_windows(settings.kafka, settings.topic(topics.WORKER_CHANGELOG))
    day = window_start(int(base.timestamp() * 1000), "day")
    assert (windows[f"w:day:t=acme:{day}"], windows[f"w:day:t=globex:{day}"]) == (
        (call, 1, 0),
        (2 * call, 2, 0),
    )
    assert (counters["enriched"], counters["redelivered"], counters["duplicate_generation"]) == (
        3,
        2,
        1,
    )


def test_a_three_day_old_event_redelivered_after_newer_traffic_counts_once(
    one_partition: Settings,
) -> None:
    settings = one_partition
    spilled = factories.usage(ts=datetime.now(UTC) - timedelta(days=3), idempotency_key="spill")
    live = factories.usage(ts=recent(), idempotency_key="live")
    marker = factories.usage(ts=recent(), idempotency_key="marker")
    with run_worker(settings, "w1") as engine:
        send(settings, [spilled, live])  # the watermark moves three days on
        assert len(enriched_records(settings, 2)) == 2  # committed, expiry run and all
        send(settings, [spilled, marker])
        got = enriched_records(settings, 3)
        counters = engine.counters()
    assert [e.event_id for e in got] == [spilled.event_id, live.event_id, marker.event_id]
    assert sum(e.cost_nusd or 0 for e in got) == sum(map(expected_cost, (spilled, live, marker)))
    assert (counters["enriched"], counters["redelivered"]) == (3, 1)


def test_ids_remembered_before_they_were_scoped_are_honoured(one_partition: Settings) -> None:
    settings = one_partition
    names = {t.name: settings.topic(t.name) for t in TOPICS}
    create_topics(
        settings.kafka, [TopicSpec(names[t.name], t.compacted, t.configs) for t in TOPICS], 1, 1
    )
    seen = str(int(datetime.now(UTC).timestamp() * 1000) - 3_600_000).encode()
    old = {unscoped("E:", "evt-old"): seen, unscoped("K:", "order-7"): seen}
    produce(
        settings.kafka, names[topics.WORKER_CHANGELOG], [(k.encode(), v) for k, v in old.items()]
    )
    redelivery = factories.usage(event_id="evt-old", idempotency_key="order-8", ts=recent())
    retry = factories.usage(event_id="evt-new", idempotency_key="order-7", ts=recent())
    marker = factories.usage(event_id="evt-marker", idempotency_key="order-9", ts=recent())
    with run_worker(settings, "w1") as engine:
        send(settings, [redelivery, retry, marker])
        got = enriched_records(settings, 2)
        counters = engine.counters()
    assert [(e.event_id, e.duplicate_generation) for e in got] == [
        ("evt-new", True),
        ("evt-marker", False),
    ]
    assert (counters["redelivered"], counters["duplicate_generation"]) == (1, 1)
    state = changelog_state(settings.kafka, names[topics.WORKER_CHANGELOG])
    ids = {k for k, v in state.items() if k[:2] in ("E:", "K:", "I:", "G:") and v is not None}
    assert ids == {
        *old,
        scoped("I:", "acme", "evt-new"),
        scoped("I:", "acme", "evt-marker"),
        scoped("G:", "acme", "order-9"),
    }

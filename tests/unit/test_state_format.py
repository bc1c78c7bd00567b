"""The worker's state, as its changelog and its RocksDB store hold it, byte for byte.

A state key or value written differently after an upgrade would be read as garbage (or
not at all) from the changelog topics and stores that exist: ids forgotten, spend lost,
budgets unblocked. These tests drive the processors over a fixed history that touches
every kind of state key (legacy records of older releases included) and compare what
they write with what the releases before the typed key registry wrote: one sample of
each kind and form written out below, a count of writes and deletes per kind, and a
digest of the whole changelog stream.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.alert_history import history
from tests.helpers.factories import request, usage
from tests.helpers.state_keys import scoped, unscoped
from tokenledger.contract import topics
from tokenledger.contract.messages import Budget
from tokenledger.contract.price_book import load_price_book
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.store import DiskState
from tokenledger.streams.worker.task import partition_task

START = datetime(2026, 11, 20, 6, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
NAMES = {t.name: t.name for t in topics.TOPICS}
OLD_PREFIXES = (
    "m:watermark",
    "a:e",
    "a:b:",
    "a:f:",
    "a:l:",
    "rb:",
    "cb:",
    "I:",
    "G:",
    "E:",
    "K:",
    "s:",
    "x:",
    "d:",
    "i:",
    "r:",
    "q:",
    "g:",
    "w:",
)
"""Every prefix of a state key the worker wrote or still reads."""

LEGACY = [
    ("d:evt-before-digests", str(START_MS - 60_000)),
    ("i:order-before-digests", f"evt-before-digests|{START_MS - 60_000}"),
    (unscoped("E:", "evt-before-scoping"), str(START_MS - 30_000)),
    (unscoped("K:", "order-before-scoping"), str(START_MS - 30_000)),
    ("x:req-before-scoping:1", str(START_MS - 20_000)),
    ("r:req-unscoped:1", f"drip|tagging|7000000|{START_MS + 5_000}"),
    ("g:tenant/gone", f"warn|80|{START_MS + 3_600_000}|{START_MS - 1_000}"),
]
"""Records of older releases, as an old changelog holds them."""


def _kind(key: str, value: str | None) -> str:
    prefix = next(p for p in OLD_PREFIXES if key.startswith(p))
    if value is None:
        return prefix
    if prefix in ("a:f:", "g:", "rb:"):
        return prefix + value.split("|", 1)[0]  # one sample of each form
    if prefix == "cb:":
        return prefix + value.split("|", 1)[0]  # closed (0) and open (1)
    return prefix


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _extra_events() -> list[tuple[datetime, str, dict[str, Any]]]:
    """(event time, topic, JSON) beside the history: reservations settled, expired and
    settled early; a breaker that opens and recovers; a route over its retry budget; a
    redelivery and a repeated generation."""
    out: list[tuple[datetime, str, dict[str, Any]]] = []

    def add(topic: str, minute: float, **fields: Any) -> None:
        ts = START + timedelta(minutes=minute)
        common = {"tenant_id": "drip", "ts": ts, "model": "gpt-4.1-nano", "feature": "tagging"}
        make = request if topic == topics.REQUESTS else usage
        event = make(**{**common, **fields})
        out.append((ts, topic, json.loads(event.model_dump_json())))

    add(topics.REQUESTS, 30, request_id="req-a", event_id="q1", reserved_cost_nusd=4_000_000)
    add(topics.REQUESTS, 30.1, request_id="req-b", event_id="q2", reserved_cost_nusd=9_000_000)
    add(topics.USAGE, 30.2, request_id="req-a", event_id="u-a", idempotency_key="k-a")
    add(topics.USAGE, 30.3, request_id="req-c", event_id="u-c", idempotency_key="k-c")
    add(topics.REQUESTS, 30.4, request_id="req-c", event_id="q3", reserved_cost_nusd=1_000)
    add(topics.USAGE, 30.5, request_id="req-a", event_id="u-a", idempotency_key="k-a")
    add(topics.USAGE, 30.6, request_id="req-a", event_id="u-a2", idempotency_key="k-a")
    for i in range(25):  # a failing provider: the breaker opens
        add(
            topics.USAGE,
            50 + i / 60,
            request_id=f"f{i}",
            event_id=f"f{i}",
            idempotency_key=f"f{i}",
            route="flaky",
            success=False,
        )
    for i in range(6):  # probes after the cool-down: it closes
        add(
            topics.USAGE,
            52 + i / 60,
            request_id=f"p{i}",
            event_id=f"p{i}",
            idempotency_key=f"p{i}",
            route="flaky",
        )
    for i in range(14):  # retries: over the route's retry budget
        add(
            topics.USAGE,
            80 + i / 60,
            request_id=f"rt{i}",
            event_id=f"rt{i}",
            idempotency_key=f"rt{i}",
            route="retrying",
            attempt=2,
        )
    return out


def _events() -> list[tuple[datetime, str, dict[str, Any]]]:
    h = history(START)
    base = [(datetime.fromisoformat(e["ts"]), topics.USAGE, e) for e in h.events]
    extra = _extra_events()
    merged = base + extra
    merged.sort(key=lambda x: x[0])  # stable: the history keeps its arrival order
    return merged


def _budgets() -> list[Budget]:
    def daily(tenant: str, limit: int, warn: tuple[int, ...], feature: str | None = None) -> Budget:
        at = START - timedelta(days=1)
        return Budget(
            tenant_id=tenant, feature=feature, limit_nusd=limit, warn_pct=warn, updated_at=at
        )

    return [
        daily("drip", 40_000_000, (50, 80)),
        daily("drip", 30_000_000, (80,), "agent"),
        daily("pause", 10**12, (80,)),
    ]


def changelog_stream() -> list[list[tuple[str, str | None]]]:
    """The changes of each batch, as the engine writes them to the changelog."""
    state = ChangelogState()
    for key, value in LEGACY:
        state.restore(key, value)
    book = BudgetDefinitions()
    for b in _budgets():
        book.apply(b.scope.encode(), b.model_dump_json().encode())
    task = partition_task(
        state,
        load_price_book(),
        book,
        NAMES,
        reservation_timeout=timedelta(minutes=10),
        heartbeat=timedelta(minutes=30),
        dedup_retention=timedelta(hours=1),
    )
    task.budgets.on_budgets_changed(book.changed)
    book.changed.clear()
    batches = [state.changes()]
    offset = pending = 0
    removed = False
    batch_end = START
    for ts, topic, event in _events():
        now = ts + timedelta(seconds=1)  # batches of up to 40 events and 5 s
        if pending and (now >= batch_end or pending == 40):
            task.end_batch(batch_end if now >= batch_end else now)
            batches.append(state.changes())
            pending = 0
        if not pending:
            batch_end = now + timedelta(seconds=5)
        if not removed and ts >= START + timedelta(minutes=200):
            book.apply(b"tenant/pause", None)  # a budget removed
            task.budgets.on_budgets_changed(book.changed)
            book.changed.clear()
            removed = True
        offset += 1
        task.process(topic, 0, offset, None, json.dumps(event).encode(), now)
        pending += 1
    task.end_batch(now + timedelta(hours=2))
    batches.append(state.changes())
    return batches


def _digest(batches: list[list[tuple[str, str | None]]]) -> str:
    h = hashlib.sha256()
    for batch in batches:
        for key, value in batch:
            h.update(key.encode() + b"\x00" + (b"\xff" if value is None else value.encode()))
            h.update(b"\n")
        h.update(b"\x1e")
    return h.hexdigest()


def _summary(
    batches: list[list[tuple[str, str | None]]],
) -> tuple[dict[str, tuple[str, str]], Counter[str]]:
    samples: dict[str, tuple[str, str]] = {}
    counts: Counter[str] = Counter()
    for batch in batches:
        for key, value in batch:
            kind = _kind(key, value)
            counts[_kind(key, None) + (" put" if value is not None else " del")] += 1
            if value is not None and kind not in samples:
                samples[kind] = (key, value)
    return samples, counts


@pytest.fixture(scope="module")
def stream() -> list[list[tuple[str, str | None]]]:
    return changelog_stream()


def test_every_kind_is_written_as_before(stream: list[list[tuple[str, str | None]]]) -> None:
    samples, _ = _summary(stream)
    assert samples == SAMPLES


def test_the_changelog_stream_is_unchanged(stream: list[list[tuple[str, str | None]]]) -> None:
    _, counts = _summary(stream)
    assert dict(counts) == COUNTS
    assert _digest(stream) == STREAM_SHA256


def test_a_store_on_disk_is_laid_out_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RocksDB store's own records too: the expiry index and the applied offset."""
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.5)
    store = DiskState(tmp_path / "p")
    for key, value in LEGACY:
        store.restore(key, value)
    store.restore(scoped("I:", "drip", "evt-1"), str(START_MS))
    store.restore("w:minute:t=drip:1795672800000", "5,1,0")
    store.restore("w:minute:t=drip:1795672860000", None)
    store.finish_restore(8)
    store.applied(None)
    for order in ("order-1", "order-2"):  # one index record of two keys
        store.put(scoped("G:", "drip", order), str(START_MS + 1))
        store.expire_later(scoped("G:", "drip", order), START_MS + 1)
    store.put("s:drip req-9:2", str(START_MS + 2))
    store.expire_later("s:drip req-9:2", START_MS + 2)
    store.applied(11)
    assert store.expire(START_MS + 1) == 5  # the restored ids: one index record
    store.applied(12)
    raw = [(k, v) for k, v in store.db.items()]
    store.close()
    assert raw == STORE_BYTES


# Recorded from the worker as it was before its state keys had a registry: what existing
# changelog topics and stores hold.
SAMPLES: dict[str, tuple[str, str]] = {
    "E:": ("E:28153600f513871e62b93abc272ba574", "1795154340000"),
    "G:": ("G:2c075beed9ff230750507d10e01f566b", "1795154413723"),
    "I:": ("I:cc8bf7112b50fc53e458c2efaf6d7828", "1795154413723"),
    "K:": ("K:cabd3338de4e4b96789f7e652b9670cb", "1795154340000"),
    "a:b:": ("a:b:t=pause:1795154400000", "800000,1,800000,0,0,0"),
    "a:e": ("a:e", "1795154400000"),
    "a:f:cool": ("a:f:retry_storm:t=drip", "cool|1795159380000"),
    "a:f:firing": (
        "a:f:retry_storm:t=drip",
        "firing|1795155900000|0|0|b7aede44b825eaf82cf3935b7086b867|warning",
    ),
    "a:l:": ("a:l:t=drip", "0|1|1795154400000"),
    "cb:0": ("cb:pause|draft|openai|gpt-4.1-mini", "0|0|0|0|0|0|0|0|closed|1795154412:1:0"),
    "cb:1": (
        "cb:drip|flaky|openai|gpt-4.1-nano",
        "1|1795157419000|1795157449000|1|0|20|20|1795157421000|open@1795157449000|",
    ),
    "g:allow": ("g:tenant/gone", "allow||1795156224000|1795156224000"),
    "g:block": ("g:tenant/drip", "block|100|1795219200000|1795161182051"),
    "g:warn": ("g:tenant/drip", "warn|50|1795219200000|1795158264113"),
    "m:watermark": ("m:watermark", "1795154412723"),
    "q:": ("q:t=pause:1795154400000", "800000"),
    "r:": ("r:drip req-unscoped:1", "drip|tagging|7000000|1795154405000"),
    "rb:allow": ("rb:pause|draft", "allow|0|1795154412:1:0:0"),
    "rb:block": (
        "rb:drip|retrying",
        "block|1795159211000|1795159200:0:1:441200,1795159201:0:1:441200,1795159202:0:1:441200,1795159203:0:1:441200,1795159204:0:1:441200,1795159205:0:1:441200,1795159206:0:1:441200,1795159207:0:1:441200,1795159208:0:1:441200,1795159209:0:1:441200",
    ),
    "s:": ("s:pause dr2:1", "1795154412723"),
    "w:": ("w:day:t=pause:1795132800000", "800000,1,0"),
}
COUNTS = {
    "E: del": 2,
    "E: put": 1,
    "G: del": 568,
    "G: put": 567,
    "I: del": 609,
    "I: put": 608,
    "K: del": 2,
    "K: put": 1,
    "a:b: del": 656,
    "a:b: put": 1962,
    "a:e put": 229,
    "a:f: put": 425,
    "a:l: put": 1283,
    "cb: del": 49,
    "cb: put": 593,
    "d: del": 1,
    "g: put": 9,
    "i: del": 1,
    "m:watermark put": 448,
    "q: put": 974,
    "r: del": 4,
    "r: put": 3,
    "rb: del": 48,
    "rb: put": 590,
    "s: del": 608,
    "s: put": 607,
    "w: del": 543,
    "w: put": 4386,
    "x: del": 1,
}
STREAM_SHA256 = "9271ab0240283bce59ad1c3d5a9e4718d6f486620e80c6e6ffc5e3122a079af3"
STORE_BYTES = [
    (b"G:8d7cf87d5984d2826db99db96748d600", b"1795154400001"),
    (b"G:ef87059938868ce97c8e044da3f3ea4b", b"1795154400001"),
    (
        b"X:000001a1f78a5301:1a0c4506df4.3",
        b"G:8d7cf87d5984d2826db99db96748d600\nG:ef87059938868ce97c8e044da3f3ea4b",
    ),
    (b"Y:000001a1f78a04e0:1a0c4506df4.2", b"x:req-before-scoping:1"),
    (b"Y:000001a1f78a5302:1a0c4506df4.4", b"s:drip req-9:2"),
    (b"g:tenant/gone", b"warn|80|1795158000000|1795154399000"),
    (b"r:req-unscoped:1", b"drip|tagging|7000000|1795154405000"),
    (b"s:drip req-9:2", b"1795154400002"),
    (b"w:minute:t=drip:1795672800000", b"5,1,0"),
    (b"x:req-before-scoping:1", b"1795154380000"),
    (b"~applied", b"12"),
    (b"~applied_at_ms", b"1790000000500"),
]

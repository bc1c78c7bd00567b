"""Which edge instance decides each claim, and its copy of the claims it decides.

Every edge joins one consumer group on ``tokenledger.claims.v1`` (``tokenledger-edge-claims``
in the namespace). The group gives each partition to exactly one member: that member owns
the partition's keys. Its assignor carries each member's URL in the join metadata and hands
every member the whole map, partition to URL, so any instance can forward a request to the
owner. Faust's tables would route the same way, but they share the app's consumer group and
the edge's app is a group per process (every edge reads every signal); a group of its own
is the equivalent with the owner's URL in it.

The owner reads its partitions from the start to the end offset it saw on assignment
(compacted: the latest record per key), then decides: under the key's lock, it writes the
new record with ``acks=all`` and answers once the broker acknowledged. A rebalance revokes
every partition (aiokafka's eager protocol) and waits for the decisions under way, so the
next owner, which reads to the end before deciding, sees every record the last owner
acknowledged: no key is granted twice. While a partition loads, its keys answer 503.
A dead owner's partitions move after the group's session timeout; its leases run on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from tokenledger.streams.edge.claim_state import DELETE, Answer, Claim, Write, live

log = logging.getLogger(__name__)

Produce = Callable[[int, bytes, bytes | None], Awaitable[None]]
"""Write (partition, key, value or None for a tombstone); returns once acknowledged."""
Decide = Callable[[Claim | None, int], tuple[Answer, Write]]


@dataclass(frozen=True)
class Route:
    """Where a key is decided: ``here`` (partition), ``there`` (the owner's URL), or
    ``moving`` (a rebalance is under way, or the partition is loading)."""

    where: Literal["here", "there", "moving"]
    partition: int | None = None
    url: str | None = None


class RoutingAssignor(AbstractPartitionAssignor):
    """Round-robin assignment that also tells every member who owns each partition."""

    name = "tokenledger-claims"
    version = 0

    def __init__(self, url: str) -> None:
        self.url = url
        self.routes: dict[int, str] = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, list(topics), self.url.encode())

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        plain = RoundRobinPartitionAssignor.assign(cluster, members)
        routes = {
            str(p): members[member].user_data.decode()
            for member, assignment in plain.items()
            for tp in assignment.partitions()
            for p in (tp.partition,)
        }
        shared = json.dumps(routes, sort_keys=True).encode()
        return {
            member: ConsumerProtocolMemberAssignment(self.version, a.assignment, shared)
            for member, a in plain.items()
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.routes = {int(p): url for p, url in json.loads(assignment.user_data or b"{}").items()}


class ClaimKeeper(ConsumerRebalanceListener):
    """The claims of the partitions this instance owns, and where the others are decided."""

    def __init__(self, topic: str, url: str, produce: Produce) -> None:
        self.topic = topic
        self.url = url
        self.assignor = RoutingAssignor(url)
        self._produce = produce
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions = 0
        self.tables: dict[int, dict[bytes, Claim]] = {}
        self.loading: dict[int, int] = {}  # partition -> end offset to read to
        self.serving: set[int] = set()
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._changed: dict[bytes, asyncio.Event] = {}
        self._busy = 0
        self._idle = asyncio.Condition()
        self._settled = asyncio.Event()

    # -- where a key is decided --------------------------------------------------------

    def partition_of(self, key: bytes) -> int | None:
        if not self.partitions:
            return None
        return (murmur2(key) & 0x7FFFFFFF) % self.partitions

    def owner(self, key: bytes) -> Route:
        p = self.partition_of(key)
        if p is None:
            return Route("moving")
        if p in self.serving:
            return Route("here", p)
        url = self.assignor.routes.get(p)
        if url is None or url == self.url or p in self.loading or not self._settled.is_set():
            return Route("moving", p)
        return Route("there", p, url)

    async def settled(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            pass

    # -- deciding ------------------------------------------------------------------------

    async def decide(self, partition: int, key: bytes, decide: Decide) -> Answer | None:
        """Apply ``decide`` to the key's claim; None when the partition moved meanwhile."""
        self._busy += 1
        try:
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                if partition not in self.serving:
                    return None
                table = self.tables[partition]
                answer, write = decide(table.get(key), now_ms())
                if write is not None:
                    value = None if write is DELETE else write.to_bytes()  # type: ignore[union-attr]
                    await self._produce(partition, key, value)
                    if isinstance(write, Claim):
                        table[key] = write
                    else:
                        table.pop(key, None)
                    self._notify(key)
            return answer
        finally:
            self._busy -= 1
            if not self._busy:
                async with self._idle:
                    self._idle.notify_all()

    def current(self, partition: int, key: bytes) -> Claim | None:
        return self.tables.get(partition, {}).get(key)

    async def changed(self, key: bytes, timeout: float) -> None:
        """Return when the key's claim changes, its partition moves, or after ``timeout``."""
        event = self._changed.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), max(timeout, 0.0))
        except TimeoutError:
            pass

    def _notify(self, key: bytes) -> None:
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    def expired(self, now: int) -> list[tuple[int, bytes]]:
        """Served keys whose claim no longer binds (lapsed lease, result past its TTL); also
        forgets the locks nobody holds."""
        for key, lock in list(self._locks.items()):
            if not lock.locked():
                del self._locks[key]
        return [
            (p, key)
            for p in sorted(self.serving)
            for key, claim in list(self.tables.get(p, {}).items())
            if live(claim, now) is None
        ]

    # -- the group -----------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._settled.clear()
        self.serving.clear()
        self.loading.clear()
        async with self._idle:
            await self._idle.wait_for(lambda: self._busy == 0)
        self.tables.clear()
        for key in list(self._changed):
            self._notify(key)  # waiters look again: their key may be decided elsewhere now

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        if self.consumer is None:
            return
        tps = list(assigned)
        self.partitions = len(self.consumer.partitions_for_topic(self.topic) or ())
        ends = await self.consumer.end_offsets(tps) if tps else {}
        if tps:
            await self.consumer.seek_to_beginning(*tps)
        for tp in tps:
            self.tables[tp.partition] = {}
            self.loading[tp.partition] = ends[tp]
        await self._check_loaded()
        log.info("claims: this edge owns partitions %s of %d", sorted(self.tables), self.partitions)
        self._settled.set()

    async def run(self, consumer: AIOKafkaConsumer) -> None:
        """Follow the group until cancelled: load assigned partitions, then pause them."""
        self.consumer = consumer
        consumer.subscribe([self.topic], listener=self)
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batches.items():
                    table = self.tables.get(tp.partition)
                    if tp.partition not in self.loading or table is None:
                        continue
                    for record in records:
                        if record.value is None:
                            table.pop(record.key, None)
                        else:
                            table[record.key] = Claim.from_bytes(record.value)
                await self._check_loaded()
        finally:
            await consumer.stop()

    async def _check_loaded(self) -> None:
        if self.consumer is None:
            return
        for p, end in list(self.loading.items()):
            tp = TopicPartition(self.topic, p)
            if await self.consumer.position(tp) >= end:
                del self.loading[p]
                self.consumer.pause(tp)  # the owner's copy is the truth from here on
                self.serving.add(p)
                log.info("claims: partition %d read (%d keys)", p, len(self.tables[p]))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def consumer_for(
    group: str, keeper: ClaimKeeper, bootstrap: list[str], auth: Mapping[str, Any]
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(keeper.assignor,),
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        **auth,
    )

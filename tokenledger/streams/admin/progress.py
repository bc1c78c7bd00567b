"""How far a consumer group has got: committed offsets against the topics' ends, and
whether anything is left to consume. Used by the demo's progress line, the soak and the
fault suite."""

from __future__ import annotations

import time
from bisect import bisect_left

from tokenledger.streams.config import Settings


class Probe:
    """Committed offsets of a consumer group on some topics, and the topics' end offsets
    (read_uncommitted: a probe never waits on an open transaction)."""

    def __init__(self, settings: Settings, group: str, *names: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from tokenledger.kafka_config import client_config

        self.group = group
        self.config = client_config(settings.kafka, {"enable.auto.commit": False})
        self.consumer = Consumer(
            {**self.config, "group.id": group, "isolation.level": "read_uncommitted"}
        )
        self.partitions = []
        for topic in names:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            self.partitions += [TopicPartition(topic, p) for p in sorted(meta.partitions)]

    def committed(self) -> int:
        """Committed offsets summed (-1 while the coordinator cannot say). On a
        transactional topic offsets also count commit markers: see RecordCount."""
        by_partition = self.committed_by_partition()
        return -1 if by_partition is None else sum(by_partition.values())

    def committed_by_partition(self) -> dict[tuple[str, int], int] | None:
        from confluent_kafka import KafkaException

        try:
            done = self.consumer.committed(self.partitions, timeout=5)
        except KafkaException:
            return None  # a coordinator still loading: ask again later
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in done}

    def end(self) -> int:
        """Offsets after the last record; transaction markers count, as in committed ones."""
        return sum(self.consumer.get_watermark_offsets(tp, 5)[1] for tp in self.partitions)

    def caught_up(self) -> bool:
        """Nothing left to consume after the committed offsets. A transactional topic ends
        with commit markers that no consumer commits past, so partitions behind their end
        are read (read_committed) from the committed offset to see whether records remain."""
        from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

        try:
            done = self.consumer.committed(self.partitions, timeout=5)
        except KafkaException:
            return False
        behind = [
            TopicPartition(tp.topic, tp.partition, max(tp.offset, 0))
            for tp in done
            if max(tp.offset, 0) < self.consumer.get_watermark_offsets(tp, 5)[1]
        ]
        if not behind:
            return True
        reader = Consumer(
            {
                **self.config,
                "group.id": f"{self.group}-probe",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        try:
            reader.assign(behind)
            at_end: set[tuple[str, int]] = set()
            deadline = time.monotonic() + 10
            while len(at_end) < len(behind) and time.monotonic() < deadline:
                for m in reader.consume(100, 0.5):
                    err = m.error()
                    if err is None:
                        return False  # a record nobody has committed past
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add((m.topic() or "", m.partition() or 0))
            return len(at_end) == len(behind)
        finally:
            reader.close()


class RecordCount:
    """How many records of some topics lie before given offsets. Offsets of a transactional
    topic also count its commit markers, so a group's committed offsets overstate what it
    consumed; this reads the topics (read_committed, from the start) to count records."""

    def __init__(self, settings: Settings, *names: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        from tokenledger.kafka_config import client_config

        self.consumer = Consumer(
            client_config(
                settings.kafka,
                {
                    "group.id": "tokenledger-record-count",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                },
            )
        )
        partitions = []
        for topic in names:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        self.consumer.assign(partitions)
        self.offsets: dict[tuple[str, int], list[int]] = {}

    def before(self, offsets: dict[tuple[str, int], int], budget_s: float = 0.1) -> int:
        """Records before ``offsets`` (e.g. a group's committed ones), reading for at most
        ``budget_s`` first: a progress line stays cheap while traffic flows; give a longer
        budget for an exact final count."""
        from confluent_kafka import TopicPartition

        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            for m in self.consumer.consume(10_000, 0.02):
                if m.error() is None:
                    where = (m.topic() or "", m.partition() or 0)
                    self.offsets.setdefault(where, []).append(m.offset() or 0)
            positions = self.consumer.position([TopicPartition(t, p) for t, p in offsets])
            if all(tp.offset >= offsets[(tp.topic, tp.partition)] for tp in positions):
                break  # read up to every target: markers included, the count is exact
        return sum(bisect_left(self.offsets.get(tp, []), at) for tp, at in offsets.items())

    def close(self) -> None:
        self.consumer.close()

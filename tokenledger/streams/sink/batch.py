"""One sink batch: what was read, per topic, ready to insert.

Usage records arrive as JSONEachRow lines (``columns.usage_line``) and go to ClickHouse as
one block it parses itself; the other topics, a few rows each, as row values. Every row
keeps the key and bytes of the message it came from: a row ClickHouse refuses goes to the
DLQ with them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Source = tuple[bytes | None, bytes]


@dataclass
class Insert:
    """One table's part of a batch: JSONEachRow ``lines``, or ``rows`` in insert-column
    order (ending in the Kafka partition and offset)."""

    topic: str
    token: str
    sources: list[Source]
    offsets: list[tuple[int, int]]  # (partition, offset) of each row
    lines: list[bytes] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)

    def alone(self) -> Iterator[Insert]:
        """Each row as an insert of its own, with its own deduplication token."""
        for i, (partition, offset) in enumerate(self.offsets):
            yield Insert(
                self.topic,
                f"{self.token}:{offset}",
                self.sources[i : i + 1],
                [(partition, offset)],
                self.lines[i : i + 1],
                self.rows[i : i + 1],
            )


@dataclass
class Batch:
    inserts: dict[str, Insert] = field(default_factory=dict)
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    started: float = 0.0
    count: int = 0

    def read(self, topic: str, partition: int, offset: int) -> None:
        """Mark an offset as read (stored or rejected: either way the batch covers it)."""
        if not self.ranges:
            self.started = time.monotonic()
        first, _ = self.ranges.get((topic, partition), (offset, offset))
        self.ranges[(topic, partition)] = (first, offset)

    def _insert(self, topic: str, partition: int, offset: int, source: Source) -> Insert:
        self.read(topic, partition, offset)
        insert = self.inserts.get(topic)
        if insert is None:
            insert = self.inserts[topic] = Insert(topic, "", [], [])
        insert.sources.append(source)
        insert.offsets.append((partition, offset))
        self.count += 1
        return insert

    def add(
        self, topic: str, partition: int, offset: int, values: list[Any], source: Source
    ) -> None:
        self._insert(topic, partition, offset, source).rows.append([*values, partition, offset])

    def add_line(
        self, topic: str, partition: int, offset: int, line: bytes, source: Source
    ) -> None:
        self._insert(topic, partition, offset, source).lines.append(line)

    def token(self, topic: str) -> str:
        spans = sorted((p, a, b) for (t, p), (a, b) in self.ranges.items() if t == topic)
        return hashlib.sha256(f"{topic}|{spans}".encode()).hexdigest()

    def sealed(self) -> list[Insert]:
        """The inserts, each with its deduplication token (the batch is complete)."""
        for topic, insert in self.inserts.items():
            insert.token = self.token(topic)
        return list(self.inserts.values())

"""Key-value state of one partition's processor, with the changes since the last commit.

The engine writes the changes to the compacted changelog topic in the same Kafka
transaction as the outputs and the input offsets, and rebuilds the state from the
changelog when a partition is assigned: state and outputs never disagree.

Two implementations share one interface: ``ChangelogState`` keeps everything in memory (the
offline demo, tests); ``tokenledger.streams.worker.store.DiskState`` keeps it in RocksDB and only the
uncommitted changes in memory (the worker).

Keys of an expiring kind (the deduplication ids, the settled requests; state_keys.py lists
every kind) hold a time in milliseconds as their value; the state indexes them by that
time, one index per kind, so that forgetting the oldest is a range, not a scan, and memory
does not hold them (``expire_later`` / ``expire``).

Every remembered id belongs to its tenant: callers choose event ids (CloudEvents ``source``
+ ``id``), idempotency keys and request ids, so two tenants on one partition may well send
the same one. Keys written before ids were scoped are still read until they expire; none
is written any more, and deduplication keys of releases before digests are rewritten
under their digest as they are restored.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Protocol

from tokenledger.streams.worker.state_keys import (
    IDS,
    SETTLED,
    expiry_index,
    expiry_of,
    legacy_entry,
)


def holds(state: State, prefix: str) -> bool:
    """Whether any key under ``prefix`` is left (a seek on disk, not a scan)."""
    return next(iter(state.items(prefix)), None) is not None


class State(Protocol):
    """What a processor needs of its partition's state."""

    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def restore(self, key: str, value: str | None) -> None: ...
    def finish_restore(self, next_offset: int) -> None: ...
    def changes(self) -> list[tuple[str, str | None]]: ...
    def items(self, prefix: str) -> Iterator[tuple[str, str]]: ...
    def expire_later(self, key: str, ts_ms: int) -> None: ...
    def expire(self, horizon_ms: int, index: str = IDS) -> int: ...
    def applied(self, next_offset: int | None) -> None: ...
    def close(self) -> None: ...
    def remembered(self) -> int: ...


class ChangelogState:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._expiry: dict[str, list[tuple[int, str]]] = {IDS: [], SETTLED: []}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        self.data[key] = value
        self._dirty.add(key)

    def delete(self, key: str) -> None:
        if self.data.pop(key, None) is not None:
            self._dirty.add(key)

    def restore(self, key: str, value: str | None) -> None:
        """Apply a changelog record (None is a tombstone) without marking it dirty; an
        old-format dedup entry is rewritten (dirty) under its digest key."""
        if value is not None and (converted := legacy_entry(key, value)) is not None:
            self.data.pop(key, None)
            self._dirty.add(key)  # the next commit tombstones the old key
            new_key, seen_ms = converted
            self.put(new_key, str(seen_ms))
            self.expire_later(new_key, seen_ms)
            return
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
            if expiry_of(key) is not None:
                self.expire_later(key, int(value))

    def finish_restore(self, next_offset: int) -> None:
        """The changelog is applied up to ``next_offset`` (memory: nothing to record)."""

    def changes(self) -> list[tuple[str, str | None]]:
        """Keys changed since the last call, with their current value (None: deleted)."""
        out = [(k, self.data.get(k)) for k in sorted(self._dirty)]
        self._dirty.clear()
        return out

    def items(self, prefix: str) -> Iterator[tuple[str, str]]:
        return ((k, v) for k, v in self.data.items() if k.startswith(prefix))

    def expire_later(self, key: str, ts_ms: int) -> None:
        """Index ``key`` (of an expiring kind) by its event time."""
        heapq.heappush(self._expiry[expiry_index(key)], (ts_ms, key))

    def expire(self, horizon_ms: int, index: str = IDS) -> int:
        """Delete the keys of ``index`` with an event time before ``horizon_ms``; how many."""
        heap, count = self._expiry[index], 0
        while heap and heap[0][0] < horizon_ms:
            key = heapq.heappop(heap)[1]
            if self.data.pop(key, None) is not None:
                self._dirty.add(key)
                count += 1
        return count

    def applied(self, next_offset: int | None) -> None:
        """The changes last returned are committed up to this changelog offset (memory:
        nothing to do)."""

    def close(self) -> None:
        """Nothing to release in memory."""

    def remembered(self) -> int:
        return len(self._expiry[IDS])

"""Key-value state of one partition's processor, with the changes since the last commit.

The engine writes the changes to the compacted changelog topic in the same Kafka
transaction as the outputs and the input offsets, and rebuilds the state from the
changelog when a partition is assigned: state and outputs never disagree.

Two implementations share one interface: ``ChangelogState`` keeps everything in memory (the
offline demo, tests); ``tokenledger.streams.worker.store.DiskState`` keeps it in RocksDB and only the
uncommitted changes in memory (the worker).

Keys under an expiring prefix (``EXPIRING``: the deduplication ids, the settled requests)
hold a time in milliseconds as their value; the state indexes them by that time, one index
per kind, so that forgetting the oldest is a range, not a scan, and memory does not hold
them (``expire_later`` / ``expire``).

Every remembered id belongs to its tenant: callers choose event ids (CloudEvents ``source``
+ ``id``), idempotency keys and request ids, so two tenants on one partition may well send
the same one. Keys written before ids were scoped (``UNSCOPED``) are still read until they
expire; none is written any more.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from hashlib import blake2b
from typing import Protocol

IDS, SETTLED = "ids", "settled"
EVENT_ID, GENERATION, SETTLED_REQUEST = "I:", "G:", "s:"
UNSCOPED = {EVENT_ID: "E:", GENERATION: "K:", SETTLED_REQUEST: "x:"}
"""Each prefix, and the one the same ids had before they were scoped by tenant."""
_SCOPED = {EVENT_ID: IDS, GENERATION: IDS, SETTLED_REQUEST: SETTLED}
EXPIRING = {**_SCOPED, **{UNSCOPED[prefix]: index for prefix, index in _SCOPED.items()}}
"""Prefixes of keys whose value is a time in ms, and the expiry index each is in: a
tenant's event ids (I:) and idempotency keys (G:), each a 16-byte BLAKE2b digest in hex,
valued with when they were first seen and forgotten the dedup retention after; usage
events that settled a request (s:, ``<tenant> <request id>:<attempt>``), valued with their
event time and kept for the reservation timeout. E:, K: and x: are the same ids unscoped."""

LEGACY = {"d:": "E:", "i:": "K:"}
"""Deduplication keys of releases before digests (``d:<event_id>`` = ts, ``i:<key>`` =
``<event_id>|ts``): read from an old changelog, rewritten under their (unscoped) digest
key."""


def digest_key(prefix: str, value: str) -> str:
    """The fixed-size state key of an id: prefix + 16-byte BLAKE2b in hex (34 chars)."""
    return prefix + blake2b(value.encode(), digest_size=16).hexdigest()


def scoped_key(prefix: str, tenant_id: str, value: str) -> str:
    """The fixed-size state key of a tenant's id: one digest of ``<tenant> <id>`` (neither
    a tenant name nor an id may hold a space, so no two pairs share a key)."""
    return prefix + blake2b(f"{tenant_id} {value}".encode(), digest_size=16).hexdigest()


def holds(state: State, prefix: str) -> bool:
    """Whether any key under ``prefix`` is left (a seek on disk, not a scan)."""
    return next(iter(state.items(prefix)), None) is not None


def legacy_entry(key: str, value: str) -> tuple[str, str] | None:
    """(new key, ts) for an old-format dedup entry, else None."""
    new_prefix = LEGACY.get(key[:2])
    if new_prefix is None:
        return None
    return digest_key(new_prefix, key[2:]), value.rsplit("|", 1)[-1]


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
            self.put(*converted)
            self.expire_later(converted[0], int(converted[1]))
            return
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
            if key[:2] in EXPIRING:
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
        """Index ``key`` (under an EXPIRING prefix) by its event time."""
        heapq.heappush(self._expiry[EXPIRING[key[:2]]], (ts_ms, key))

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

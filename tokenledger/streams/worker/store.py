"""A partition's state on disk (RocksDB, via rocksdict), the changelog still the truth.

Only committed state reaches the store: changes of the running batch stay in memory until
the engine's Kafka transaction has committed, then go to RocksDB in one write batch with
the changelog offset they are applied up to (``~applied``). A restarted worker replays only
the changelog tail after that offset. A store that is missing, unreadable, ahead of the
changelog (``~applied`` past its end: recreated topic, a copy from elsewhere) or older than
tombstones are kept (they may have been compacted away) is rebuilt from the changelog,
never trusted. Memory holds one batch of changes, whatever the retention window.

Besides the state keys, the store keeps an index of the expiring keys by event time, per
kind (dedup ids, settled requests), one record per committed batch under the latest of its
event times (laid out in state_keys.py; not in the changelog: it is derived from the
values), so forgetting everything older than a horizon is a short scan and one range
delete, and memory never holds the keys. A key expires once its whole batch is past the
horizon: at most one batch's spread of event times late.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenledger.streams.worker.state_keys import (
    APPLIED,
    APPLIED_AT,
    IDS,
    INDEXES,
    decode_index_record,
    encode_index_record,
    expiry_index,
    expiry_of,
    index_bound,
    index_key,
    legacy_entry,
)

MAX_AGE_MS = 12 * 3600 * 1000
"""A store last applied longer ago than this is rebuilt: the changelog's tombstones are
kept 24 h (delete.retention.ms), so a tail older than that may have lost deletions."""


class StoreError(RuntimeError):
    """The store cannot be opened or read; the engine rebuilds it."""


CACHE_BYTES = 32 * 1024 * 1024
MEMTABLE_BYTES = 16 * 1024 * 1024
_shared: tuple[Any, Any] | None = None


def _memory() -> tuple[Any, Any]:
    """One block cache and one memtable budget (charged to that cache) for every store of
    the process: RocksDB's memory stays ~CACHE_BYTES however many partitions a worker holds
    (each store's own defaults would add up to ~40 MB per partition)."""
    global _shared
    if _shared is None:
        from rocksdict import Cache, WriteBufferManager

        cache = Cache(CACHE_BYTES)
        manager = WriteBufferManager.new_write_buffer_manager_with_cache(
            MEMTABLE_BYTES, False, cache
        )
        _shared = (cache, manager)
    return _shared


def _options() -> Any:
    """Bloom filters on the tables and the memtable: most lookups are of ids never seen
    (a first delivery), and a filter answers those without reading a block (measured:
    ~0.6 us instead of ~14 us per absent key with 1M keys stored). Index and filter blocks
    stay with their tables (about 1.3 bytes of memory per stored key): in a cache this
    small, 10M keys' filters thrashed it and lookups slowed tenfold."""
    from rocksdict import BlockBasedOptions, Options

    cache, memtables = _memory()
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(8 * 1024 * 1024)
    options.set_max_write_buffer_number(2)
    options.set_write_buffer_manager(memtables)
    tables = BlockBasedOptions()
    tables.set_bloom_filter(10, False)
    tables.set_block_cache(cache)
    options.set_block_based_table_factory(tables)
    options.set_memtable_prefix_bloom_ratio(0.1)
    options.set_memtable_whole_key_filtering(True)
    return options


class DiskState:
    """The ChangelogState interface over RocksDB (see tokenledger.streams.worker.state)."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db: Any = Rdict(str(path), _options())
        except Exception as exc:  # noqa: BLE001 - any open failure means: rebuild
            raise StoreError(f"cannot open the state store {path}: {exc}") from None
        self._pending: dict[str, str | None] = {}
        self._index_add: dict[str, list[tuple[int, str]]] = {name: [] for name in INDEXES}
        self._expired_to = dict.fromkeys(INDEXES, 0)
        self._index_delete_to: dict[str, int] = {}
        self._replay: Any = None
        self._seq = 0

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def rebuild(cls, path: Path) -> DiskState:
        """An empty store at ``path``, whatever was there."""
        shutil.rmtree(path, ignore_errors=True)
        return cls(path)

    def applied_offset(self) -> int | None:
        """The changelog offset this store is applied up to; None for a new store."""
        try:
            raw = self.db.get(APPLIED)
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"cannot read the state store {self.path}: {exc}") from None
        return None if raw is None else int(raw)

    def applied_age_ms(self) -> int:
        raw = self.db.get(APPLIED_AT)
        return int(time.time() * 1000) - int(raw) if raw is not None else 1 << 62

    # -- the ChangelogState interface ----------------------------------------------------

    def get(self, key: str) -> str | None:
        try:
            return self._pending[key]
        except KeyError:
            raw = self.db.get(key.encode())
            return None if raw is None else raw.decode()

    def put(self, key: str, value: str) -> None:
        self._pending[key] = value

    def delete(self, key: str) -> None:
        if self.get(key) is not None:
            self._pending[key] = None

    def restore(self, key: str, value: str | None) -> None:
        """Apply a changelog record while replaying (written by ``finish_restore``)."""
        from rocksdict import WriteBatch

        if self._replay is None:
            self._replay = WriteBatch(raw_mode=True)
        if value is not None and (converted := legacy_entry(key, value)) is not None:
            self._replay.delete(key.encode())
            self._pending[key] = None  # the next commit tombstones the old key
            new_key, seen_ms = converted
            self.put(new_key, str(seen_ms))
            self.expire_later(new_key, seen_ms)
            return
        if value is None:
            self._replay.delete(key.encode())
            return
        self._replay.put(key.encode(), value.encode())
        index = expiry_of(key)
        if index is not None:
            self._index_add[index].append((int(value), key))
            if len(self._index_add[index]) >= 5000:
                self._write_index(self._replay)
        if self._replay.len() >= 50_000:
            self.db.write(self._replay)
            self._replay = None

    def finish_restore(self, next_offset: int) -> None:
        """Everything up to ``next_offset`` of the changelog is in the store."""
        from rocksdict import WriteBatch

        batch = self._replay if self._replay is not None else WriteBatch(raw_mode=True)
        self._replay = None
        self._write_index(batch)
        _mark_applied(batch, next_offset)
        self.db.write(batch)

    def changes(self) -> list[tuple[str, str | None]]:
        return sorted(self._pending.items())

    def items(self, prefix: str) -> Iterator[tuple[str, str]]:
        seen = set()
        start = prefix.encode()
        for raw_key, raw_value in self.db.items(from_key=start):
            if not raw_key.startswith(start):
                break
            key = raw_key.decode()
            seen.add(key)
            value = self._pending.get(key, raw_value.decode())
            if value is not None:
                yield key, value
        for key, value in list(self._pending.items()):
            if key.startswith(prefix) and key not in seen and value is not None:
                yield key, value

    def expire_later(self, key: str, ts_ms: int) -> None:
        self._index_add[expiry_index(key)].append((ts_ms, key))

    def expire(self, horizon_ms: int, index: str = IDS) -> int:
        """Delete the keys of ``index`` with an event time before ``horizon_ms``: a range
        of the on-disk index (itself deleted at the next commit) plus this batch's own.
        The index only holds keys that were written, so they are deleted without reading
        them first; how many."""
        out: list[str] = []
        if horizon_ms > self._expired_to[index]:
            prefix, end = INDEXES[index], index_bound(index, horizon_ms)
            start = index_bound(index, self._expired_to[index])
            for raw_key, raw_value in self.db.items(from_key=start):
                if raw_key >= end or not raw_key.startswith(prefix):
                    break
                out.extend(decode_index_record(raw_value))
            self._expired_to[index] = horizon_ms
            self._index_delete_to[index] = horizon_ms
        keep: list[tuple[int, str]] = []
        for ts_ms, key in self._index_add[index]:
            if ts_ms < horizon_ms:
                out.append(key)
            else:
                keep.append((ts_ms, key))
        self._index_add[index] = keep
        pending = self._pending
        for key in out:
            pending[key] = None
        return len(out)

    def applied(self, next_offset: int | None) -> None:
        """The changes last returned are committed; write them, and (when known) the
        changelog offset they reach. Without an offset the marker stays where it was: the
        next start replays a little more, which rewrites the same values."""
        from rocksdict import WriteBatch

        adding = any(self._index_add.values())
        if not self._pending and not adding and not self._index_delete_to:
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in self._pending.items():
            if value is None:
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), value.encode())
        self._write_index(batch)
        for index, horizon_ms in self._index_delete_to.items():
            batch.delete_range(INDEXES[index], index_bound(index, horizon_ms))
        if next_offset is not None:
            _mark_applied(batch, next_offset)
        self.db.write(batch)
        self._pending.clear()
        self._index_delete_to.clear()

    def _write_index(self, batch: Any) -> None:
        """Per index, one record for the expiring keys added since the last one, under
        the latest of their event times."""
        for index, added in self._index_add.items():
            if added:
                self._seq += 1
                latest = max(ts for ts, _ in added)
                key = index_key(index, latest, int(time.time() * 1000), self._seq)
                batch.put(key, encode_index_record(k for _, k in added))
                self._index_add[index] = []

    def close(self) -> None:
        self.db.close()

    def remembered(self) -> int:
        return int(self.db.property_int_value("rocksdb.estimate-num-keys") or 0)


def _mark_applied(batch: Any, next_offset: int) -> None:
    """Record in ``batch`` that the store reaches changelog offset ``next_offset``, now."""
    batch.put(APPLIED, str(next_offset).encode())
    batch.put(APPLIED_AT, str(int(time.time() * 1000)).encode())

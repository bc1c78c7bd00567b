"""Bringing a partition's state back on assignment: a RocksDB store reused with its
changelog tail replayed, or the whole changelog replayed into a new store (or into memory).

A store is rebuilt, never trusted, when it is missing, cannot be opened, is applied past
the changelog's end, before its start, or longer ago than tombstones are kept.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tokenledger.streams.errors import ServiceUnavailableError
from tokenledger.streams.worker.state import ChangelogState, State

log = logging.getLogger(__name__)


def open_states(
    state_dir: str | None, ends: dict[int, tuple[int, int]], counters: Counter[str]
) -> tuple[dict[int, State], dict[int, int]]:
    """The state of each partition and the changelog offset to replay it from; ``ends``
    holds each changelog partition's (low, high) watermarks."""
    from confluent_kafka import OFFSET_BEGINNING

    if state_dir is None:
        return {p: ChangelogState() for p in ends}, dict.fromkeys(ends, OFFSET_BEGINNING)
    from tokenledger.streams.worker.store import MAX_AGE_MS, DiskState, StoreError

    states: dict[int, State] = {}
    starts = {}
    for p, (low, high) in ends.items():
        path = Path(state_dir) / str(p)
        why = "missing"
        try:
            store = DiskState(path)
            mark = store.applied_offset()
            if mark is not None:
                why = (
                    "ahead of the changelog"
                    if mark > high
                    else "older than the changelog's start"
                    if mark < low
                    else "too old to trust"
                    if store.applied_age_ms() > MAX_AGE_MS
                    else ""
                )
            if not why and mark is not None:
                states[p], starts[p] = store, mark
                counters["state.reused_partitions"] += 1
                continue
            store.close()
        except StoreError as exc:
            why = str(exc)
        if why != "missing":
            log.warning("state of partition %d %s: rebuilding it from the changelog", p, why)
        states[p], starts[p] = DiskState.rebuild(path), OFFSET_BEGINNING
        counters["state.rebuilt_partitions"] += 1
    return states, starts


PROGRESS_EVERY_S = 10.0


def replay(
    restorer: Any,
    changelog: str,
    states: dict[int, State],
    starts: dict[int, int],
    targets: dict[int, int],
    timeout_s: float,
    counters: Counter[str],
) -> None:
    """Apply each partition's changelog from its start offset up to its target. A long
    replay logs its progress; one that stops advancing for ``timeout_s`` (a transaction
    left open holds read_committed readers back) fails with a clear error."""
    from confluent_kafka import TopicPartition

    pending = {p for p, high in targets.items() if high > 0 and (starts[p] < 0 or starts[p] < high)}
    restorer.assign([TopicPartition(changelog, p, starts[p]) for p in pending])
    now = time.monotonic()
    stalled_at, report_at, applied = now + timeout_s, now + PROGRESS_EVERY_S, 0
    while pending:
        now = time.monotonic()
        if now > stalled_at:
            raise ServiceUnavailableError(
                f"restoring state of partitions {sorted(pending)} made no progress for "
                f"{timeout_s:.0f}s; is a transaction stuck open?"
            )
        messages = restorer.consume(5000, 0.2)
        for m in messages:
            partition = m.partition()
            if m.error() is None and partition is not None:
                key, value = m.key(), m.value()
                states[partition].restore(
                    key.decode() if key else "", value.decode() if value else None
                )
                kind = "tail_records" if starts[partition] >= 0 else "replayed_records"
                counters["state." + kind] += 1
                applied += 1
        if messages:
            stalled_at = now + timeout_s
        left = 0
        for p in list(pending):
            position = restorer.position([TopicPartition(changelog, p)])[0].offset
            if position >= targets[p]:
                pending.discard(p)
            else:
                left += targets[p] - max(position, 0)
        if pending and now > report_at:
            report_at = now + PROGRESS_EVERY_S
            log.info(
                "restoring state of partitions %s: %d records applied, about %d to go",
                sorted(pending),
                applied,
                left,
            )
    for p, state in states.items():
        state.finish_restore(targets[p])

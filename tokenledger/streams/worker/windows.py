"""Event-time spend windows (minute, hour, day, UTC-aligned) per tenant, tenant x feature
and tenant x model, with an allowed lateness.

An event is late when its minute window closed more than ``allowed_lateness`` before the
partition's watermark (the largest event time seen): it is not added to any window, but it
is still priced, flagged ``late`` and stored, and counted on the late path. Decisions
depend only on the input order, so a replay reproduces every window exactly.

State key: ``w:<grain>:<dim>:<window start, epoch ms>``; value ``<cost_nusd>,<events>,<unpriced>``
where ``dim`` is ``t=<tenant>``, ``tf=<tenant>|<feature>`` or ``tm=<tenant>|<model>``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tokenledger.streams.worker.state import State

GRAINS_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
KEEP_MS = {"minute": 2 * 3_600_000, "hour": 2 * 86_400_000, "day": 40 * 86_400_000}
DEFAULT_LATENESS = timedelta(minutes=5)


def window_start(ts_ms: int, grain: str) -> int:
    size = GRAINS_MS[grain]
    return ts_ms - ts_ms % size


def scope_dim(tenant_id: str, feature: str | None) -> str:
    """The dimension of a tenant (``t=``) or a tenant's feature (``tf=``), as in window,
    budget-slot and anomaly keys."""
    return f"t={tenant_id}" if feature is None else f"tf={tenant_id}|{feature}"


def dims(tenant_id: str, feature: str, model: str) -> tuple[str, str, str]:
    return (f"t={tenant_id}", f"tf={tenant_id}|{feature}", f"tm={tenant_id}|{model}")


@dataclass(frozen=True)
class WindowTotal:
    grain: str
    dim: str
    start: datetime
    cost_nusd: int
    events: int
    unpriced: int


class SpendWindows:
    """Totals live as integers in memory. ``add`` sums a batch's events per (minute, tenant,
    feature, model); ``flush()`` folds those sums into every grain and dimension and writes
    the changed totals to the state, once per batch (the engine commits them with the
    batch's outputs): ``totals`` is current after a flush."""

    def __init__(self, state: State, allowed_lateness: timedelta = DEFAULT_LATENESS):
        self.state = state
        self.lateness_ms = int(allowed_lateness.total_seconds() * 1000)
        self.totals: dict[str, list[int]] = {
            key: [int(x) for x in value.split(",")] for key, value in state.items("w:")
        }
        self._batch: dict[tuple[int, str, str, str], list[int]] = {}
        self._expiry = [(_expires_at(key), key) for key in self.totals]
        heapq.heapify(self._expiry)

    def is_late(self, ts_ms: int, watermark_ms: int) -> bool:
        closes = window_start(ts_ms, "minute") + GRAINS_MS["minute"]
        return closes + self.lateness_ms < watermark_ms

    def add(self, ts_ms: int, tenant_id: str, feature: str, model: str, cost: int | None) -> None:
        group = (window_start(ts_ms, "minute"), tenant_id, feature, model)
        entry = self._batch.get(group)
        if entry is None:
            entry = self._batch[group] = [0, 0, 0]
        if cost is None:
            entry[2] += 1
        else:
            entry[0] += cost
        entry[1] += 1

    def flush(self) -> None:
        totals, dirty = self.totals, set()
        for (minute, tenant_id, feature, model), (cost, events, unpriced) in self._batch.items():
            names = dims(tenant_id, feature, model)
            for grain, size in GRAINS_MS.items():
                start = minute - minute % size
                for dim in names:
                    key = f"w:{grain}:{dim}:{start}"
                    entry = totals.get(key)
                    if entry is None:
                        entry = totals[key] = [0, 0, 0]
                        heapq.heappush(self._expiry, (start + size + KEEP_MS[grain], key))
                    entry[0] += cost
                    entry[1] += events
                    entry[2] += unpriced
                    dirty.add(key)
        self._batch.clear()
        for key in dirty:
            total, events, unpriced = totals[key]
            self.state.put(key, f"{total},{events},{unpriced}")

    def expire(self, watermark_ms: int) -> int:
        dropped = 0
        while self._expiry and self._expiry[0][0] < watermark_ms:
            _, key = heapq.heappop(self._expiry)
            if self.totals.pop(key, None) is not None:
                self.state.delete(key)
                dropped += 1
        return dropped


def _expires_at(key: str) -> int:
    grain, _, rest = key[2:].partition(":")
    start = int(rest.rsplit(":", 1)[1])
    return start + GRAINS_MS[grain] + KEEP_MS[grain]


def parse_window(key: str, value: str) -> WindowTotal:
    grain, _, rest = key[2:].partition(":")
    dim, start = rest.rsplit(":", 1)
    total, events, unpriced = (int(x) for x in value.split(","))
    return WindowTotal(
        grain, dim, datetime.fromtimestamp(int(start) / 1000, UTC), total, events, unpriced
    )

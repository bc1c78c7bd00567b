"""Event-time spend windows (minute, hour, day, UTC-aligned) per tenant, tenant x feature
and tenant x model, with an allowed lateness.

An event is late when its minute window closed more than ``allowed_lateness`` before the
partition's watermark (the largest event time seen): it is not added to any window, but it
is still priced, flagged ``late`` and stored, and counted on the late path. Decisions
depend only on the input order, so a replay reproduces every window exactly.

State: one key per grain, dimension (the tenant, tenant x feature, tenant x model) and
window start, holding the window's cost, events and unpriced events (state_keys.WINDOW).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.state_keys import (
    WINDOW,
    WindowKey,
    feature_dim,
    model_dim,
    tenant_dim,
)
from tokenledger.streams.worker.state_values import WindowTotals

GRAINS_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
KEEP_MS = {"minute": 2 * 3_600_000, "hour": 2 * 86_400_000, "day": 40 * 86_400_000}
DEFAULT_LATENESS = timedelta(minutes=5)


def window_start(ts_ms: int, grain: str) -> int:
    size = GRAINS_MS[grain]
    return ts_ms - ts_ms % size


def dims(tenant_id: str, feature: str, model: str) -> tuple[str, str, str]:
    """The dimensions an event's spend is added to: its tenant, feature and model."""
    return tenant_dim(tenant_id), feature_dim(tenant_id, feature), model_dim(tenant_id, model)


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
            key: list(WINDOW.decode_value(value)) for key, value in state.items(WINDOW.prefix)
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
                    key = window_key(grain, dim, start)
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
            self.state.put(key, WINDOW.encode_value(WindowTotals(*totals[key])))

    def expire(self, watermark_ms: int) -> int:
        dropped = 0
        while self._expiry and self._expiry[0][0] < watermark_ms:
            _, key = heapq.heappop(self._expiry)
            if self.totals.pop(key, None) is not None:
                self.state.delete(key)
                dropped += 1
        return dropped


def _expires_at(key: str) -> int:
    window = WINDOW.decode_key(key)
    return window.start_ms + GRAINS_MS[window.grain] + KEEP_MS[window.grain]


def window_key(grain: str, dim: str, start_ms: int) -> str:
    """The state key (and ``SpendWindows.totals`` key) of a window."""
    return WINDOW.encode_key(WindowKey(grain, dim, start_ms))


def parse_window(key: str, value: str) -> WindowTotal:
    window, totals = WINDOW.decode_key(key), WINDOW.decode_value(value)
    start = datetime.fromtimestamp(window.start_ms / 1000, UTC)
    return WindowTotal(window.grain, window.dim, start, *totals)

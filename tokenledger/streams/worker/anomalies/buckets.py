"""Per-minute evidence per scope (tenant, tenant x feature, tenant x route), in the
worker's changelog state so that a replay or a takeover reproduces it."""

from __future__ import annotations

from tokenledger.contract.names import budget_scope, parse_scope, route_scope
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.state_keys import (
    BUCKET,
    FEATURE,
    TENANT,
    BucketKey,
    dim_kind,
    parse_dim,
)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
KEEP_MINUTES = 130
"""model_mix widens its window to 60 minutes and compares with the hour before it."""
COST, EVENTS, TOP1, TOP2, AUX1, AUX2 = range(6)
"""Bucket fields (TOP1/TOP2: the two largest calls). AUX1/AUX2: t= duplicate generations/their
cost; tf= violating calls/input tokens; tr= priced calls/sum of price levels (permille of
the reference model); tm= (tenant x model, spend only: names the top model of an alert)."""


def human_scope(scope: str) -> tuple[str, str, str | None]:
    """(alert scope, tenant, feature) of a dimension (tenant, feature or route) or a budget."""
    budget = parse_scope(scope)
    if budget is not None:
        return (scope, *budget)
    dim = parse_dim(scope)
    tenant, other = dim.tenant_id, dim.other or ""
    if dim.kind == TENANT:
        return budget_scope(tenant, None), tenant, None
    if dim.kind == FEATURE:
        return budget_scope(tenant, other), tenant, other
    return route_scope(tenant, other), tenant, None


def keep_top_two(entry: list[int], first: int, second: int, cost: int) -> None:
    """Keep ``entry[first]`` >= ``entry[second]`` the two largest costs seen, with ``cost``."""
    if cost > entry[second]:
        if cost > entry[first]:
            entry[second] = entry[first]
            entry[first] = cost
        else:
            entry[second] = cost


class Buckets:
    """Per-minute counters per scope, persisted per scope and minute (state_keys.BUCKET)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.data: dict[tuple[str, int], list[int]] = {}
        self.active: dict[int, set[str]] = {}
        for key, value in state.items(BUCKET.prefix):
            scope, minute = BUCKET.decode_key(key)
            self.data[(scope, minute)] = BUCKET.decode_value(value)
            self.active.setdefault(minute, set()).add(scope)
        self._dirty: set[tuple[str, int]] = set()

    def add(self, scope: str, minute: int, cost: int, aux1: int = 0, aux2: int = 0) -> None:
        """One call's evidence."""
        self.merge(scope, minute, cost, 1, (cost, 0), aux1, aux2)

    def merge(
        self,
        scope: str,
        minute: int,
        cost: int,
        events: int,
        tops: tuple[int, int],
        aux1: int,
        aux2: int,
    ) -> None:
        """Sums of ``events`` calls, ``tops`` their two largest costs."""
        key = (scope, minute)
        entry = self.data.get(key)
        if entry is None:
            entry = self.data[key] = [0, 0, 0, 0, 0, 0]
            self.active.setdefault(minute, set()).add(scope)
        entry[COST] += cost
        entry[EVENTS] += events
        for top in tops:
            keep_top_two(entry, TOP1, TOP2, top)
        entry[AUX1] += aux1
        entry[AUX2] += aux2
        self._dirty.add(key)

    def get(self, scope: str, minute: int) -> list[int] | None:
        return self.data.get((scope, minute))

    def total(self, scope: str, first: int, last: int) -> list[int]:
        """Sums of COST, EVENTS, AUX1 and AUX2 over the minutes [first, last]."""
        out = [0, 0, 0, 0, 0, 0]
        for minute in range(first, last + 1, MINUTE_MS):
            entry = self.data.get((scope, minute))
            if entry is not None:
                out[COST] += entry[COST]
                out[EVENTS] += entry[EVENTS]
                out[AUX1] += entry[AUX1]
                out[AUX2] += entry[AUX2]
        return out

    def flush(self) -> None:
        for scope, minute in self._dirty:
            entry = self.data[(scope, minute)]
            self.state.put(BUCKET.encode_key(BucketKey(scope, minute)), BUCKET.encode_value(entry))
        self._dirty.clear()

    def expire(self, before_ms: int) -> None:
        for minute in [m for m in self.active if m < before_ms]:
            for scope in self.active.pop(minute):
                self.data.pop((scope, minute), None)
                self._dirty.discard((scope, minute))
                self.state.delete(BUCKET.encode_key(BucketKey(scope, minute)))


def feature_first(scope: str) -> tuple[int, str]:
    """Feature scopes before tenant scopes: a spend incident names the feature when it can."""
    return (0 if dim_kind(scope) == FEATURE else 1, scope)

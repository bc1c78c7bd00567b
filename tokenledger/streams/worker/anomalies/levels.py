"""Slowly decaying levels per scope: the long memory a detector compares with besides the
hour before, so a change that has lasted an hour is still measured against what came
before it. A level is a decayed mean (half-life ``half_life_minutes``) of per-call values,
updated once per closed minute, persisted per scope (state_keys.LEVEL: replays reproduce
it)."""

from __future__ import annotations

from tokenledger.streams.worker.anomalies.buckets import MINUTE_MS
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.state_keys import LEVEL
from tokenledger.streams.worker.state_values import Level


class Levels:
    def __init__(self, state: State, half_life_minutes: int) -> None:
        self.state = state
        self.decay = 0.5 ** (1 / half_life_minutes)
        self.data: dict[str, tuple[float, float, int]] = {}
        for key, value in state.items(LEVEL.prefix):
            self.data[LEVEL.decode_key(key)] = LEVEL.decode_value(value)

    def level(self, scope: str, minute: int) -> tuple[float, float] | None:
        """(mean value, weight in calls) as of ``minute``, or None without history."""
        entry = self.data.get(scope)
        if entry is None:
            return None
        total, weight, at = entry
        factor = self.decay ** max(0, (minute - at) // MINUTE_MS)
        return total / weight if weight else 0.0, weight * factor

    def add(self, scope: str, minute: int, calls: int, value_sum: int) -> None:
        """Add a closed minute's ``calls`` whose values sum to ``value_sum``."""
        if calls == 0:
            return
        total, weight, at = self.data.get(scope, (0.0, 0.0, minute))
        factor = self.decay ** max(0, (minute - at) // MINUTE_MS)
        entry = (total * factor + value_sum, weight * factor + calls, max(minute, at))
        self.data[scope] = entry
        self.state.put(LEVEL.encode_key(scope), LEVEL.encode_value(Level(*entry)))

    def expire(self, before_ms: int) -> None:
        """Forget scopes silent since ``before_ms`` (their level no longer means much)."""
        for scope in [s for s, (_, _, at) in self.data.items() if at < before_ms]:
            del self.data[scope]
            self.state.delete(LEVEL.encode_key(scope))

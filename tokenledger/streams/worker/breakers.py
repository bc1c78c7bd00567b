"""Circuit breakers: per tenant x route x provider x model, from the usage events' success.

Closed: the calls of the last minute of event time (model calls only; a cache hit calls no
provider) are counted; when at least ``min_calls`` of them ran and ``failure_pct`` percent
or more failed, the breaker opens. Open: guards refuse at once until ``open_until`` =
the opening's event time + the cool-down, then let ``probe_pct`` percent of calls through
(half-open, decided by each guard from the signal alone). The calls whose event time is at
or after ``open_until`` are the probes: ``probes_to_close`` successes close the breaker,
a failure opens it again with the cool-down doubled (up to ``max_cooldown``). Calls that
started before ``open_until`` (in flight when it opened) count for nothing.

Everything is event time, the callers' own clock, so a replay of the same events opens and
closes the same breakers at the same instants, and a worker that lags does not hold a
breaker open longer than the failures warrant: its signal arrives with less (or none) of
the cool-down left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tokenledger.contract.call_control import BreakerSignal, breaker_scope
from tokenledger.streams.worker.sliding import Minute
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.state_keys import BREAKER, BreakerKey
from tokenledger.streams.worker.state_values import BreakerMark

ISSUER = "breakers-worker"
_CLEANUP_EVERY_MS = 60_000


@dataclass(frozen=True)
class BreakerConfig:
    """Defaults: 50% of at least 20 calls in a minute opens for 30 s, doubling up to 300 s
    (Envoy's max_ejection_time); 10% probe; 5 probe successes close (docs/worker.md)."""

    failure_pct: int = 50
    min_calls: int = 20
    cooldown: timedelta = timedelta(seconds=30)
    max_cooldown: timedelta = timedelta(seconds=300)
    probe_pct: int = 10
    probes_to_close: int = 5

    def cooldown_ms(self, openings: int) -> int:
        base = int(self.cooldown.total_seconds() * 1000)
        cap = int(self.max_cooldown.total_seconds() * 1000)
        return min(base << min(openings - 1, 40), cap)


@dataclass
class Breaker:
    """One breaker's state; ``calls``/``failures`` are what the last transition saw."""

    open: bool = False
    opened_ms: int = 0
    open_until_ms: int = 0
    openings: int = 0
    successes: int = 0
    calls: int = 0
    failures: int = 0
    published: str = "closed"
    issued_ms: int = 0
    minute: Minute = field(default_factory=lambda: Minute(2))

    @property
    def phase(self) -> str:
        return f"open@{self.open_until_ms}" if self.open else "closed"

    def mark(self) -> BreakerMark:
        """The breaker as its state key holds it (state_keys.BREAKER)."""
        return BreakerMark(
            self.open,
            self.opened_ms,
            self.open_until_ms,
            self.openings,
            self.successes,
            self.calls,
            self.failures,
            self.issued_ms,
            self.published,
            self.minute.seconds,
        )

    @classmethod
    def of(cls, m: BreakerMark) -> Breaker:
        return cls(
            m.open,
            m.opened_ms,
            m.open_until_ms,
            m.openings,
            m.successes,
            m.calls,
            m.failures,
            m.published,
            m.issued_ms,
            Minute.of(m.seconds, 2),
        )


def observe(b: Breaker, cfg: BreakerConfig, ts_ms: int, ok: bool) -> None:
    """One call's outcome: counted while closed; a probe's result once the cool-down ended."""
    if not b.open:
        b.minute.add(ts_ms, 1, 0 if ok else 1)
    elif ts_ms >= b.open_until_ms:
        if not ok:
            trip(b, cfg, ts_ms, b.successes + 1, 1)
        else:
            b.successes += 1
            if b.successes >= cfg.probes_to_close:
                b.open, b.openings, b.calls, b.failures = False, 0, b.successes, 0
                b.successes = 0
                b.minute.clear()


def judge(b: Breaker, cfg: BreakerConfig, now_ms: int) -> None:
    """Open a closed breaker whose last minute (up to ``now_ms``) failed enough."""
    if b.open:
        return
    b.minute.slide(now_ms)
    calls, failures = b.minute.totals()
    if calls >= cfg.min_calls and failures * 100 >= cfg.failure_pct * calls:
        trip(b, cfg, now_ms, calls, failures)


def trip(b: Breaker, cfg: BreakerConfig, at_ms: int, calls: int, failures: int) -> None:
    b.openings = min(b.openings + 1, 1000)
    b.open, b.opened_ms, b.open_until_ms = True, at_ms, at_ms + cfg.cooldown_ms(b.openings)
    b.successes, b.calls, b.failures = 0, calls, failures
    b.minute.clear()


def describe(b: Breaker, route: str, provider: str, model: str) -> str:
    """Why the breaker is in its state. A breaker opened from closed has one opening; more
    mean a probe failed."""
    what = f"{provider} {model} on route {route!r}"
    if not b.open:
        return f"circuit closed for {what}: {b.calls} probes succeeded"
    cooldown = f"cool-down {(b.open_until_ms - b.opened_ms) / 1000:g}s"
    if b.openings > 1:
        return f"circuit open for {what}: a probe failed after {b.calls - 1} succeeded; {cooldown}"
    return (
        f"circuit open for {what}: {b.failures} of {b.calls} calls failed in a minute; {cooldown}"
    )


class BreakerTracker:
    """One partition's breakers, by state key (state_keys.BREAKER: tenant, route, provider,
    model -> ``Breaker.mark()``)."""

    def __init__(self, state: State, config: BreakerConfig) -> None:
        self.state = state
        self.config = config
        self.breakers = {
            key: Breaker.of(BREAKER.decode_value(v)) for key, v in state.items(BREAKER.prefix)
        }
        self._dirty: set[str] = set()
        self._cleaned_ms = 0

    def observe(
        self, tenant_id: str, route: str, provider: str, model: str, ok: bool, ts_ms: int
    ) -> None:
        key = BREAKER.encode_key(BreakerKey(tenant_id, route, provider, model))
        b = self.breakers.get(key)
        if b is None:
            b = self.breakers[key] = Breaker()
        observe(b, self.config, ts_ms, ok)
        self._dirty.add(key)

    def end_batch(self, watermark_ms: int, now_ms: int, beat: bool) -> list[BreakerSignal]:
        keys = set(self._dirty)
        if beat:
            keys |= {k for k, b in self.breakers.items() if b.open}
        if watermark_ms - self._cleaned_ms >= _CLEANUP_EVERY_MS:
            self._cleaned_ms = watermark_ms
            keys |= set(self.breakers)
        self._dirty = set()
        out = []
        for key in sorted(keys):
            signal = self._evaluate(key, watermark_ms, now_ms, beat)
            if signal is not None:
                out.append(signal)
        return out

    def _evaluate(
        self, key: str, watermark_ms: int, now_ms: int, beat: bool
    ) -> BreakerSignal | None:
        b = self.breakers[key]
        judge(b, self.config, watermark_ms)
        publish = b.phase != b.published or (beat and b.open)
        if publish:
            b.issued_ms = max(now_ms, b.issued_ms + 1)
            b.published = b.phase
        idle = not b.open and not b.minute and b.published == "closed"
        if idle and b.issued_ms < now_ms:  # forgotten once its last signal is older
            del self.breakers[key]
            self.state.delete(key)
        else:
            self.state.put(key, BREAKER.encode_value(b.mark()))
        if not publish:
            return None
        tenant_id, route, provider, model = BREAKER.decode_key(key)
        return BreakerSignal(
            scope=breaker_scope(tenant_id, route, provider, model),
            tenant_id=tenant_id,
            route=route,
            provider=provider,
            model=model,
            state="open" if b.open else "closed",
            reason=describe(b, route, provider, model),
            calls=b.calls,
            failures=b.failures,
            opened_at=_at(b.opened_ms),
            open_until=_at(b.open_until_ms),
            openings=b.openings,
            probe_pct=self.config.probe_pct,
            issued_at=_at(b.issued_ms),
            issuer=ISSUER,
        )


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)

"""The typed values of the worker's state keys and their text (state_keys.py says which
kind of key holds which).

Every value is text in the changelog and the store, and this text is a format: records
written by earlier releases are decoded with these same codecs (tests/unit/test_state_format.py
pins them). A decoded value is a NamedTuple; what was a pipe- or comma-joined string is
encoded from one and decoded into one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Codec(Generic[T]):
    """A typed value to its text and back."""

    encode: Callable[[T], str]
    decode: Callable[[str], T]


TEXT: Codec[str] = Codec(str, str)
MS: Codec[int] = Codec(str, int)
"""An integer in decimal: a time in epoch ms, an amount in nano-USD."""
NONE: Codec[None] = Codec(lambda _: "", lambda _: None)
"""The key of a kind that is one key: its prefix alone."""
INTS: Codec[list[int]] = Codec(
    lambda v: ",".join(map(str, v)), lambda text: [int(x) for x in text.split(",")]
)
"""Comma-separated integers (an anomaly bucket's fields)."""


class LegacyGeneration(NamedTuple):
    """An idempotency key as kept before digests: ``<event id>|<seen ms>``."""

    event_id: str
    seen_ms: int


def _legacy_generation(text: str) -> LegacyGeneration:
    event_id, _, seen = text.rpartition("|")
    return LegacyGeneration(event_id, int(seen))


LEGACY_GENERATION_VALUE = Codec(lambda v: f"{v.event_id}|{v.seen_ms}", _legacy_generation)


class Reservation(NamedTuple):
    """``<tenant>|<feature>|<nano-USD>|<event time ms>``."""

    tenant_id: str
    feature: str
    nusd: int
    ts_ms: int


def _reservation(text: str) -> Reservation:
    tenant, feature, nusd, ts = text.rsplit("|", 3)
    return Reservation(tenant, feature, int(nusd), int(ts))


RESERVATION_VALUE = Codec(lambda r: f"{r.tenant_id}|{r.feature}|{r.nusd}|{r.ts_ms}", _reservation)


class WindowTotals(NamedTuple):
    """``<cost nano-USD>,<events>,<unpriced events>``."""

    cost_nusd: int
    events: int
    unpriced: int


WINDOW_VALUE = Codec(
    lambda v: f"{v.cost_nusd},{v.events},{v.unpriced}",
    lambda text: WindowTotals(*INTS.decode(text)),
)


class SignalMark(NamedTuple):
    """A budget scope's last signal, ``<state>|<threshold or ''>|<window end ms>|<issued
    ms>``; ``issued_ms`` None: written before issue times were kept (three fields)."""

    state: str
    pct: int | None
    end_ms: int
    issued_ms: int | None

    def same_window_state(self, state: str, pct: int | None, end_ms: int) -> bool:
        """Whether this mark says ``state`` at ``pct`` for the window ending ``end_ms``."""
        return (self.state, self.pct, self.end_ms) == (state, pct or None, end_ms)


def _signal_text(m: SignalMark) -> str:
    head = f"{m.state}|{m.pct or ''}|{m.end_ms}"
    return head if m.issued_ms is None else f"{head}|{m.issued_ms}"


def _signal_mark(text: str) -> SignalMark:
    state, pct, end, *issued = text.split("|")
    return SignalMark(
        state, int(pct) if pct else None, int(end), int(issued[0]) if issued else None
    )


SIGNAL_VALUE = Codec(_signal_text, _signal_mark)


class Firing(NamedTuple):
    """``firing|<start ms>|<expected>|<quiet minutes>|<fingerprint>|<severity>``."""

    start_ms: int
    expected: int
    quiet: int
    fingerprint: str
    severity: str


class Cooling(NamedTuple):
    """``cool|<until ms>``: the detector may fire on the scope again from then."""

    until_ms: int


def _incident_text(v: Firing | Cooling) -> str:
    if isinstance(v, Cooling):
        return f"cool|{v.until_ms}"
    return f"firing|{v.start_ms}|{v.expected}|{v.quiet}|{v.fingerprint}|{v.severity}"


def _incident(text: str) -> Firing | Cooling:
    parts = text.split("|")
    if parts[0] == "firing":
        return Firing(int(parts[1]), int(parts[2]), int(parts[3]), parts[4], parts[5])
    return Cooling(int(parts[1]))


INCIDENT_VALUE: Codec[Firing | Cooling] = Codec(_incident_text, _incident)


class Level(NamedTuple):
    """``<value sum>|<weight>|<last minute ms>``, the floats with 17 significant digits (a
    round trip gives the same float)."""

    total: float
    weight: float
    minute_ms: int


def _level(text: str) -> Level:
    total, weight, minute = text.split("|")
    return Level(float(total), float(weight), int(minute))


LEVEL_VALUE = Codec(lambda v: f"{v.total:.17g}|{v.weight:.17g}|{v.minute_ms}", _level)

Seconds = dict[int, list[int]]
"""Counters per second of event time (sliding.Minute)."""


def encode_seconds(seconds: Seconds) -> str:
    """``second:v1:v2...`` per second, in order, comma-separated."""
    return ",".join(":".join(map(str, (s, *row))) for s, row in sorted(seconds.items()))


def decode_seconds(text: str) -> Seconds:
    out: Seconds = {}
    for item in filter(None, text.split(",")):
        second, *values = (int(x) for x in item.split(":"))
        out[second] = values
    return out


class RetryMark(NamedTuple):
    """``<state>|<issued ms>|<seconds>``: first attempts, retries and retry nano-USD per
    second."""

    state: str
    issued_ms: int
    seconds: Seconds


def _retry_mark(text: str) -> RetryMark:
    state, issued, seconds = text.split("|", 2)
    return RetryMark(state, int(issued), decode_seconds(seconds))


RETRY_VALUE = Codec(lambda m: f"{m.state}|{m.issued_ms}|{encode_seconds(m.seconds)}", _retry_mark)


class BreakerMark(NamedTuple):
    """breakers.Breaker as stored: eight integers (open as 0/1), the published phase and
    the seconds (calls, failures), ``|``-separated."""

    open: bool
    opened_ms: int
    open_until_ms: int
    openings: int
    successes: int
    calls: int
    failures: int
    issued_ms: int
    published: str
    seconds: Seconds


def _breaker_text(m: BreakerMark) -> str:
    flag, *numbers = m[:8]
    return "|".join((str(int(flag)), *map(str, numbers), m.published, encode_seconds(m.seconds)))


def _breaker_mark(text: str) -> BreakerMark:
    *numbers, published, seconds = text.split("|")
    o, opened, until, openings, successes, calls, failures, issued = map(int, numbers)
    mark = (opened, until, openings, successes, calls, failures, issued)
    return BreakerMark(bool(o), *mark, published, decode_seconds(seconds))


BREAKER_VALUE = Codec(_breaker_text, _breaker_mark)

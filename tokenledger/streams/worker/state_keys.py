"""Every kind of key in a worker partition's state (``KINDS``): its prefix, what it holds,
and typed codecs for its key and its value (the values' in state_values.py).

State is text: a changelog record is ``<prefix><key fields>`` -> value, and the RocksDB
store keeps the same records beside its own (``INDEXES``, ``APPLIED``). Changelog topics and
stores written by earlier releases are read back with these codecs, so the text of every
kind is a format that may not change (tests/unit/test_state_format.py pins it). A legacy
kind is only read: older releases wrote it; it is rewritten or expires. No other module
spells a prefix (tests/unit/test_state_keys.py checks).

Names (tenant, feature, route, provider, model) hold no space, ``|`` or ``=``, but may hold
``:``; ids are printable ASCII without a space. The codecs rely on that: a field after a
name is split off from the right, a tenant off at the first space.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Generic, NamedTuple, TypeVar

from tokenledger.streams.worker.state_values import (
    BREAKER_VALUE,
    INCIDENT_VALUE,
    INTS,
    LEGACY_GENERATION_VALUE,
    LEVEL_VALUE,
    MS,
    NONE,
    RESERVATION_VALUE,
    RETRY_VALUE,
    SIGNAL_VALUE,
    TEXT,
    WINDOW_VALUE,
    Codec,
)

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Kind(Generic[K, V]):
    """One kind of state key: ``prefix`` + the key codec's text -> the value codec's text."""

    prefix: str
    holds: str
    key: Codec[K]
    value: Codec[V]
    expiry: str | None = None
    """The expiry index its keys are in (their value is a time in ms), if any."""
    legacy: bool = False

    def encode_key(self, fields: K) -> str:
        return self.prefix + self.key.encode(fields)

    def decode_key(self, key: str) -> K:
        return self.key.decode(key[len(self.prefix) :])

    def encode_value(self, value: V) -> str:
        return self.value.encode(value)

    def decode_value(self, text: str) -> V:
        return self.value.decode(text)


IDS, SETTLED = "ids", "settled"
"""The expiry indexes: dedup ids (forgotten the dedup retention after they were seen) and
settled requests (kept for the reservation timeout)."""

# -- remembered ids (dedup.py): the key is a 16-byte BLAKE2b digest in hex --------------


def _id(prefix: str, holds: str, legacy: bool = False) -> Kind[str, int]:
    return Kind(prefix, holds, TEXT, MS, IDS, legacy)


EVENT_ID = _id("I:", "a tenant's event id, digest of '<tenant> <id>': when first seen")
GENERATION = _id("G:", "a tenant's idempotency key, digested as event ids: when first seen")
OLD_EVENT_ID = _id("E:", "an event id before ids were scoped by tenant", legacy=True)
OLD_GENERATION = _id("K:", "an idempotency key before ids were scoped by tenant", legacy=True)
PRE_DIGEST_EVENT_ID = Kind("d:", "an event id before digests: when seen", TEXT, MS, legacy=True)
PRE_DIGEST_GENERATION = Kind(
    "i:", "an idempotency key before digests", TEXT, LEGACY_GENERATION_VALUE, legacy=True
)


def digest_key(kind: Kind[str, int], value: str) -> str:
    """The fixed-size key of an id: prefix + 16-byte BLAKE2b in hex (34 chars)."""
    return kind.prefix + blake2b(value.encode(), digest_size=16).hexdigest()


def scoped_key(kind: Kind[str, int], tenant_id: str, value: str) -> str:
    """The key of a tenant's id: one digest of ``<tenant> <id>`` (neither holds a space, so
    no two pairs share a key)."""
    h = tenant_hash(tenant_id)
    h.update(value.encode())
    return kind.prefix + h.hexdigest()


def tenant_hash(tenant_id: str) -> Any:
    """The digest of ``<tenant> `` so far: a copy updated with an id gives the digest of
    ``scoped_key``, at about half the cost of a new BLAKE2b."""
    return blake2b(f"{tenant_id} ".encode(), digest_size=16)


def legacy_entry(key: str, value: str) -> tuple[str, int] | None:
    """(digest key, ms) an entry of a release before digests is rewritten as; else None."""
    if key.startswith(PRE_DIGEST_EVENT_ID.prefix):
        ms = PRE_DIGEST_EVENT_ID.decode_value(value)
        return digest_key(OLD_EVENT_ID, PRE_DIGEST_EVENT_ID.decode_key(key)), ms
    if key.startswith(PRE_DIGEST_GENERATION.prefix):
        seen = PRE_DIGEST_GENERATION.decode_value(value).seen_ms
        return digest_key(OLD_GENERATION, PRE_DIGEST_GENERATION.decode_key(key)), seen
    return None


# -- requests (budgets.py): reservations and settle marks ---------------------------------


class RequestKey(NamedTuple):
    """One attempt of a request, ``<tenant> <request id>:<attempt>``; without a tenant as
    keys were before request ids were scoped."""

    tenant_id: str | None
    request_id: str
    attempt: int


def _request_text(k: RequestKey) -> str:
    attempt = f"{k.request_id}:{k.attempt}"
    return attempt if k.tenant_id is None else f"{k.tenant_id} {attempt}"


def _request_fields(text: str) -> RequestKey:
    tenant, space, rest = text.partition(" ")
    request_id, _, attempt = (rest if space else tenant).rpartition(":")
    return RequestKey(tenant if space else None, request_id, int(attempt))


REQUEST: Codec[RequestKey] = Codec(_request_text, _request_fields)
RESERVATION = Kind(
    "r:",
    "an open reservation (keys without a tenant: before request ids were scoped, "
    "rewritten on load)",
    REQUEST,
    RESERVATION_VALUE,
)
SETTLED_REQUEST = Kind(
    "s:", "a usage event that settled a request: its event time", REQUEST, MS, SETTLED
)
OLD_SETTLED_REQUEST = Kind(
    "x:", "a settle mark before request ids were scoped", REQUEST, MS, SETTLED, legacy=True
)

# -- dimensions: the scopes of windows, slots and anomaly evidence ------------------------

TENANT, FEATURE, MODEL, ROUTE = "t", "tf", "tm", "tr"


class Dim(NamedTuple):
    """``t=<tenant>``, or ``tf=``/``tm=``/``tr=<tenant>|<feature, model or route>``."""

    kind: str
    tenant_id: str
    other: str | None = None

    def encode(self) -> str:
        if self.other is None:
            return f"{self.kind}={self.tenant_id}"
        return f"{self.kind}={self.tenant_id}|{self.other}"


def parse_dim(text: str) -> Dim:
    kind, _, rest = text.partition("=")
    tenant, bar, other = rest.partition("|")
    return Dim(kind, tenant, other if bar else None)


def dim_kind(text: str) -> str:
    return text.partition("=")[0]


def tenant_dim(tenant_id: str) -> str:
    return f"{TENANT}={tenant_id}"


def feature_dim(tenant_id: str, feature: str) -> str:
    return f"{FEATURE}={tenant_id}|{feature}"


def model_dim(tenant_id: str, model: str) -> str:
    return f"{MODEL}={tenant_id}|{model}"


def route_dim(tenant_id: str, route: str) -> str:
    return f"{ROUTE}={tenant_id}|{route}"


def scope_dim(tenant_id: str, feature: str | None) -> str:
    """The dimension of a tenant or a tenant's feature (window, slot and anomaly keys)."""
    return tenant_dim(tenant_id) if feature is None else feature_dim(tenant_id, feature)


# -- spend: windows (windows.py), budget slots and signal marks (budgets.py) -------------


class WindowKey(NamedTuple):
    grain: str
    dim: str
    start_ms: int


def _window_fields(text: str) -> WindowKey:
    grain, _, rest = text.partition(":")
    dim, start = rest.rsplit(":", 1)
    return WindowKey(grain, dim, int(start))


WINDOW = Kind(
    "w:",
    "spend of a minute, hour or day window of a dimension",
    Codec(lambda k: f"{k.grain}:{k.dim}:{k.start_ms}", _window_fields),
    WINDOW_VALUE,
)


class SlotKey(NamedTuple):
    dim: str
    start_ms: int


def _slot_fields(text: str) -> SlotKey:
    dim, start = text.rsplit(":", 1)
    return SlotKey(dim, int(start))


SLOT = Kind(
    "q:",
    "committed spend of a tenant or feature in a 15-minute slot, nano-USD",
    Codec(lambda k: f"{k.dim}:{k.start_ms}", _slot_fields),
    MS,
)
SIGNAL = Kind("g:", "the budget signal last published for a scope", TEXT, SIGNAL_VALUE)
WATERMARK = Kind("m:watermark", "the partition's watermark: largest event time, ms", NONE, MS)

# -- anomalies (anomalies/) -----------------------------------------------------------------

EVALUATED = Kind("a:e", "the anomaly detectors have judged every minute before this", NONE, MS)


class BucketKey(NamedTuple):
    scope: str
    minute_ms: int


def _bucket_fields(text: str) -> BucketKey:
    scope, minute = text.rsplit(":", 1)
    return BucketKey(scope, int(minute))


BUCKET = Kind(
    "a:b:",
    "a minute's evidence of a dimension (anomalies/buckets.py names the fields)",
    Codec(lambda k: f"{k.scope}:{k.minute_ms}", _bucket_fields),
    INTS,
)


class IncidentKey(NamedTuple):
    detector: str
    scope: str


def _incident_fields(text: str) -> IncidentKey:
    detector, scope = text.split(":", 1)
    return IncidentKey(detector, scope)


INCIDENT = Kind(
    "a:f:",
    "a detector's incident on a scope (or a dimension): firing, or cooling down",
    Codec(lambda k: f"{k.detector}:{k.scope}", _incident_fields),
    INCIDENT_VALUE,
)
LEVEL = Kind("a:l:", "a dimension's decayed day-long level", TEXT, LEVEL_VALUE)

# -- call control: retry budgets and circuit breakers over a sliding minute -----------------


class RouteKey(NamedTuple):
    tenant_id: str
    route: str


def _route_fields(text: str) -> RouteKey:
    tenant, route = text.split("|", 1)
    return RouteKey(tenant, route)


RETRY_STATE = Kind(
    "rb:",
    "a route's retry budget: state last published, its minute of attempts",
    Codec(lambda k: f"{k.tenant_id}|{k.route}", _route_fields),
    RETRY_VALUE,
)


class BreakerKey(NamedTuple):
    tenant_id: str
    route: str
    provider: str
    model: str


def _breaker_fields(text: str) -> BreakerKey:
    tenant, route, provider, model = text.split("|", 3)
    return BreakerKey(tenant, route, provider, model)


BREAKER = Kind(
    "cb:",
    "a circuit breaker of a tenant's route, provider and model",
    Codec(lambda k: "|".join(k), _breaker_fields),
    BREAKER_VALUE,
)

KINDS: tuple[Kind[Any, Any], ...] = (
    EVENT_ID,
    GENERATION,
    OLD_EVENT_ID,
    OLD_GENERATION,
    PRE_DIGEST_EVENT_ID,
    PRE_DIGEST_GENERATION,
    RESERVATION,
    SETTLED_REQUEST,
    OLD_SETTLED_REQUEST,
    WINDOW,
    SLOT,
    SIGNAL,
    WATERMARK,
    EVALUATED,
    BUCKET,
    INCIDENT,
    LEVEL,
    RETRY_STATE,
    BREAKER,
)
EXPIRING = {k.prefix: k.expiry for k in KINDS if k.expiry is not None}
"""Prefix (two characters each) -> expiry index, for the keys whose value is a time."""


def expiry_of(key: str) -> str | None:
    """The expiry index of ``key``, or None when it does not expire by time."""
    return EXPIRING.get(key[:2])


def expiry_index(key: str) -> str:
    """The expiry index of ``key``, which is of an expiring kind (else KeyError)."""
    return EXPIRING[key[:2]]


# -- the RocksDB store's own records (store.py), not in the changelog ----------------------

APPLIED = b"~applied"
"""The changelog offset the store is applied up to (decimal)."""
APPLIED_AT = b"~applied_at_ms"
"""When it was (epoch ms, decimal)."""
INDEXES = {IDS: b"X:", SETTLED: b"Y:"}
"""Per expiry index, one record per committed batch: ``X:<latest ts, 16 hex>:<written ms
hex>.<seq hex>`` -> the batch's keys, one a line."""


def index_bound(index: str, ts_ms: int) -> bytes:
    """Where the records of ``index`` under ``ts_ms`` (clamped at 0) begin."""
    return INDEXES[index] + b"%016x:" % max(ts_ms, 0)


def index_key(index: str, latest_ms: int, written_ms: int, seq: int) -> bytes:
    """The record of a batch whose latest key is ``latest_ms``, unique across restarts."""
    return index_bound(index, latest_ms) + f"{written_ms:x}.{seq:x}".encode()


def encode_index_record(keys: Iterable[str]) -> bytes:
    return "\n".join(keys).encode()


def decode_index_record(raw: bytes) -> list[str]:
    return raw.decode().split("\n")


PREFIXES = (
    *(k.prefix for k in KINDS),
    *(f"{d}=" for d in (TENANT, FEATURE, MODEL, ROUTE)),
    *(p.decode() for p in (*INDEXES.values(), APPLIED, APPLIED_AT)),
)
"""Every prefix a state key or a store record begins with (no other module spells one)."""

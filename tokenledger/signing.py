"""Authority over budgets and signals: an HMAC-SHA256 signature in Kafka headers.

Budgets (written by ``tokenledger budget``) and block signals (written by the workers) can
stop a tenant's traffic, so readers must know who wrote them and when. With
``TOKENLEDGER_SIGNING_KEY`` set, writers sign each record and readers drop any record whose
signature is missing or wrong: a budget or a block written by anything else is ignored,
counted and logged. Without a key nothing is signed or checked (local development).

What a signature covers (v2): the topic, the record key, the value (or "tombstone"), the
record's issue time and the id of the key that signed it. The issue time orders records per
scope: readers accept a record only if it is newer than the one they hold, so a copied old
record (yesterday's ``allow``, a higher limit since lowered, an old removal) is ignored. A
value carries its own time (Signal.issued_at, Budget.updated_at); a tombstone carries it in
the ``tokenledger-issued-ms`` header, which the signature covers.

Keys rotate without a moment where honest components reject each other:
``TOKENLEDGER_SIGNING_KEY`` holds a comma-separated list, the signing key first, then the
others that are still accepted. Each record names its key by id (a hash of the key, not
the key). README "Security" has the rotation steps.

Records signed before v2 (``v1=``: topic, key, value) are still accepted when they carry a
value; a v1 tombstone is not (it has no signed time, so it could be replayed forever).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

HEADER = "tokenledger-signature"
KEY_ID_HEADER = "tokenledger-key-id"
ISSUED_HEADER = "tokenledger-issued-ms"
ENV = "TOKENLEDGER_SIGNING_KEY"
MIN_KEY_CHARS = 32
HeaderValue = str | bytes | None
Headers = Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None
"""Kafka record headers as confluent-kafka hands them over (a list of pairs) or takes them."""


class SigningKeyError(ValueError):
    """The configured key cannot be used; the message says how to fix it."""


def key_id(key: bytes) -> str:
    """A short public name of a key: records say which key signed them."""
    return hashlib.sha256(b"tokenledger-key-id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class Keyring:
    """The keys a component trusts; the first one signs."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise SigningKeyError(f"{ENV} names no key")
        for key in self.keys:
            if len(key) < MIN_KEY_CHARS:
                raise SigningKeyError(
                    f"a key in {ENV} is {len(key)} characters; use at least {MIN_KEY_CHARS} "
                    "(e.g. the output of `openssl rand -hex 32`)"
                )

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key_id(k) for k in self.keys)

    def by_id(self, kid: str) -> bytes | None:
        return next((k for k in self.keys if hmac.compare_digest(key_id(k), kid)), None)


Ring = Keyring | bytes | None
"""A keyring, one key, or None (nothing signed or checked)."""


def keyring(env: Mapping[str, str] | None = None) -> Keyring | None:
    """The keyring from TOKENLEDGER_SIGNING_KEY ("current[,previous,...]"), or None."""
    env = os.environ if env is None else env
    value = env.get(ENV) or ""
    if not value.strip():
        return None
    return Keyring(tuple(part.strip().encode() for part in value.split(",") if part.strip()))


def _ring(ring: Ring) -> Keyring | None:
    return Keyring((ring,)) if isinstance(ring, bytes) else ring


def _mac(key: bytes, parts: Iterable[bytes]) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def _body(value: bytes | None) -> bytes:
    return value if value is not None else b"\x00tomb"


def sign(key: bytes, topic: str, record_key: bytes | None, value: bytes | None,
         issued_ms: int) -> bytes:  # fmt: skip
    parts = (topic.encode(), record_key or b"", _body(value), str(issued_ms).encode(),
             key_id(key).encode())  # fmt: skip
    return b"v2=" + _mac(key, parts).encode()


def sign_v1(key: bytes, topic: str, record_key: bytes | None, value: bytes | None) -> bytes:
    """The signature of records written before issue times were signed (read-only now)."""
    return b"v1=" + _mac(key, (topic.encode(), record_key or b"", _body(value))).encode()


def headers_for(ring: Ring, topic: str, record_key: bytes | None, value: bytes | None,
                issued_ms: int) -> list[tuple[str, HeaderValue]] | None:  # fmt: skip
    """The headers to produce with (signed with the ring's first key), or None without."""
    keys = _ring(ring)
    if keys is None:
        return None
    key = keys.keys[0]
    return [(HEADER, sign(key, topic, record_key, value, issued_ms)),
            (KEY_ID_HEADER, key_id(key).encode()), (ISSUED_HEADER, str(issued_ms).encode())]  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    ok: bool
    issued_ms: int | None = None
    """The signed issue time from the headers (None for a v1 record or without a key)."""
    key_id: str | None = None


UNSIGNED_OK = Verdict(True)
REFUSED = Verdict(False)


def _one(headers: Headers, name: str) -> bytes | None:
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    found = [v.encode() if isinstance(v, str) else v for n, v in pairs if n == name]
    return found[0] if len(found) == 1 and found[0] is not None else None


def check(ring: Ring, topic: str, record_key: bytes | None, value: bytes | None,
          headers: Headers) -> Verdict:  # fmt: skip
    """Whether a record counts: always without keys; with keys, only when signed by one of
    them (v2, or v1 for a record with a value)."""
    keys = _ring(ring)
    if keys is None:
        issued = _one(headers, ISSUED_HEADER)
        return Verdict(True, int(issued) if issued is not None and issued.isdigit() else None)
    signature = _one(headers, HEADER)
    if signature is None:
        return REFUSED
    if signature.startswith(b"v1="):
        if value is None:
            return REFUSED
        for key in keys.keys:
            if hmac.compare_digest(signature, sign_v1(key, topic, record_key, value)):
                return Verdict(True, None, key_id(key))
        return REFUSED
    kid, issued = _one(headers, KEY_ID_HEADER), _one(headers, ISSUED_HEADER)
    if kid is None or issued is None or not issued.isdigit():
        return REFUSED
    signer = keys.by_id(kid.decode(errors="replace"))
    if signer is None:
        return REFUSED
    expected = sign(signer, topic, record_key, value, int(issued))
    if not hmac.compare_digest(signature, expected):
        return REFUSED
    return Verdict(True, int(issued), kid.decode())


def verify(ring: Ring, topic: str, record_key: bytes | None, value: bytes | None,
           headers: Headers) -> bool:  # fmt: skip
    """True without keys; with them, True only for a record signed with one of them."""
    return check(ring, topic, record_key, value, headers).ok

"""Authority over budgets and signals: Ed25519 signatures in Kafka headers, checked with
public keys only.

Budgets (written by ``tokenledger budget``) and block signals (written by the workers) can
stop a tenant's traffic, so readers must know who wrote them and when. The writers hold
Ed25519 private keys (tokenledger.streams.admin.signer); every reader (a gateway's ``BudgetGuard``, the
edge, the workers reading budgets) holds only the public keys in ``TOKENLEDGER_PUBLIC_KEYS``,
so a reader's host, once compromised, can verify but never sign. With public keys set, a
record whose signature is missing, made with another key or with the old shared HMAC key is
ignored, counted and logged with the reason. Without them nothing is checked (local
development).

What a signature covers: the topic, the record key, the value (or "tombstone"), the record's
issue time and the key id. The issue time orders records per scope (tokenledger.freshness):
readers accept a record only if it is newer than the one they hold, so a copied old record
is ignored. A value carries its own time (Signal.issued_at, Budget.updated_at); a tombstone
carries it in the ``tokenledger-issued-ms`` header, which the signature covers.

Keys rotate through the ring: ``TOKENLEDGER_PUBLIC_KEYS`` lists every public key still
trusted, each record names the key that signed it by id (a hash of the public key).
docs/security.md has the rotation and the migration from HMAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HEADER = "tokenledger-ed25519"
"""``<key id>:<base64 signature>``."""
ISSUED_HEADER = "tokenledger-issued-ms"
HMAC_HEADER = "tokenledger-signature"
"""Where records signed with the shared HMAC key (``v1=``, ``v2=``) carry it: refused."""
ENV = "TOKENLEDGER_PUBLIC_KEYS"
RETIRED_ENV = "TOKENLEDGER_SIGNING_KEY"
PREFIX = "ed25519:"
DOMAIN = b"tokenledger-ed25519-v1"
HeaderValue = str | bytes | None
Headers = Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None
"""Kafka record headers as confluent-kafka hands them over (a list of pairs) or takes them."""


class SigningKeyError(ValueError):
    """A configured key cannot be used; the message says how to fix it."""


def key_id(public: Ed25519PublicKey) -> str:
    """A short public name of a key: records say which key signed them."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(b"tokenledger-key-id\x00" + raw).hexdigest()[:16]


def public_text(public: Ed25519PublicKey) -> str:
    """The form ``TOKENLEDGER_PUBLIC_KEYS`` lists: ``ed25519:<base64 of the 32 bytes>``."""
    return PREFIX + base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def parse_public(text: str, where: str = f"the key in {ENV}") -> Ed25519PublicKey:
    """One public key as ``public_text`` writes it; never a private key. Errors name the
    key by ``where``, never echo it (it may be a secret pasted in the wrong place)."""
    text = text.strip()
    if "PRIVATE" in text.upper():
        raise SigningKeyError(
            f"{where} is a private key; readers take public keys only "
            "(print them with `tokenledger keys public KEYFILE`)"
        )
    if not text.startswith(PREFIX):
        raise SigningKeyError(
            f"{where} is not a public key; write ed25519:<base64> as "
            "`tokenledger keys public KEYFILE` prints it"
        )
    try:
        raw = base64.b64decode(text[len(PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise SigningKeyError(
            f"{where} is not a valid Ed25519 public key (32 bytes, base64)"
        ) from None


@dataclass(frozen=True)
class PublicKeyring:
    """The public keys a reader trusts, by key id. Only public keys: a reader cannot sign."""

    keys: tuple[Ed25519PublicKey, ...]
    by_id: Mapping[str, Ed25519PublicKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise SigningKeyError(f"{ENV} names no key")
        for key in self.keys:
            if not isinstance(key, Ed25519PublicKey):
                raise SigningKeyError(
                    f"a reader's key ring takes Ed25519 public keys only, not {type(key).__name__}"
                )
        object.__setattr__(self, "by_id", {key_id(k): k for k in self.keys})

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.by_id)

    @classmethod
    def parse(cls, text: str) -> PublicKeyring:
        """``ed25519:...,ed25519:...`` (commas or whitespace between keys)."""
        parts = text.replace(",", " ").split()
        if any("PRIVATE" in p.upper() for p in parts):
            raise SigningKeyError(
                f"{ENV} holds a private key; readers take public keys only "
                "(print them with `tokenledger keys public KEYFILE`)"
            )
        return cls(tuple(parse_public(p, f"key {i} in {ENV}") for i, p in enumerate(parts, 1)))


def public_keys(env: Mapping[str, str] | None = None) -> PublicKeyring | None:
    """The ring in TOKENLEDGER_PUBLIC_KEYS, or None (nothing checked). The old shared HMAC
    key is refused rather than ignored: ignoring it would silently stop every check."""
    env = os.environ if env is None else env
    if (env.get(RETIRED_ENV) or "").strip():
        raise SigningKeyError(
            f"{RETIRED_ENV} (a shared HMAC key) is no longer read: readers take "
            f"{ENV}, writers a private key file (docs/security.md, migrating "
            "from HMAC)"
        )
    value = env.get(ENV) or ""
    return PublicKeyring.parse(value) if value.strip() else None


def reader_ring(given: object, env: Mapping[str, str] | None = None) -> PublicKeyring | None:
    """A reader's ``public_keys`` argument: "env", None or a PublicKeyring, never a private
    key (whatever is passed, a gateway cannot be made to hold one)."""
    if isinstance(given, str) and given == "env":
        return public_keys(env)
    if given is None or isinstance(given, PublicKeyring):
        return given
    raise SigningKeyError(
        f"public_keys takes a PublicKeyring of public keys (or None), not "
        f"{type(given).__name__}: readers never hold a signing key"
    )


def _body(value: bytes | None) -> bytes:
    return value if value is not None else b"\x00tomb"


def signed_bytes(
    topic: str, record_key: bytes | None, value: bytes | None, issued_ms: int, kid: str
) -> bytes:
    """What a signature covers, each part length-prefixed."""
    parts: Iterable[bytes] = (
        DOMAIN,
        topic.encode(),
        record_key or b"",
        _body(value),
        str(issued_ms).encode(),
        kid.encode(),
    )
    return b"".join(len(p).to_bytes(8, "big") + p for p in parts)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    issued_ms: int | None = None
    """The signed issue time from the headers (None when unsigned and unchecked)."""
    key_id: str | None = None
    reason: str = ""
    """Why a record was refused."""


def single_header(headers: Headers, name: str) -> bytes | None:
    """The value of header ``name`` when it occurs exactly once, else None."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    found = [v.encode() if isinstance(v, str) else v for n, v in pairs if n == name]
    return found[0] if len(found) == 1 and found[0] is not None else None


def _has(headers: Headers, name: str) -> bool:
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    return any(n == name for n, _ in pairs)


def check(
    ring: PublicKeyring | None,
    topic: str,
    record_key: bytes | None,
    value: bytes | None,
    headers: Headers,
) -> Verdict:
    """Whether a record counts: always without a ring; with one, only when signed by one of
    its keys. A refusal says why."""
    issued = single_header(headers, ISSUED_HEADER)
    issued_ms = int(issued) if issued is not None and issued.isdigit() else None
    if ring is None:
        return Verdict(True, issued_ms)
    signature = single_header(headers, HEADER)
    if signature is None:
        if _has(headers, HEADER):
            return Verdict(False, reason=f"more than one {HEADER} header")
        if _has(headers, HMAC_HEADER):
            return Verdict(
                False,
                reason="signed with the shared HMAC key, which readers no "
                "longer accept; re-sign it with Ed25519 (docs/security.md)",
            )
        return Verdict(False, reason="unsigned")
    kid, _, sig = signature.decode(errors="replace").partition(":")
    if issued_ms is None:
        return Verdict(False, reason=f"no signed issue time ({ISSUED_HEADER})")
    public = ring.by_id.get(kid)
    if public is None:
        return Verdict(False, reason=f"signed by key {kid[:32]!r}, which is not in {ENV}")
    try:
        public.verify(
            base64.b64decode(sig, validate=True),
            signed_bytes(topic, record_key, value, issued_ms, kid),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return Verdict(False, reason=f"the signature does not match key {kid} (altered or forged)")
    return Verdict(True, issued_ms, kid)


def verify(
    ring: PublicKeyring | None,
    topic: str,
    record_key: bytes | None,
    value: bytes | None,
    headers: Headers,
) -> bool:
    """True without a ring; with one, True only for a record signed by one of its keys."""
    return check(ring, topic, record_key, value, headers).ok

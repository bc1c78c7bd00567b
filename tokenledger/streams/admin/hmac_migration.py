"""Leaving the shared HMAC key for Ed25519 without a moment where gateways see no signal.

Before Ed25519, one secret (``TOKENLEDGER_SIGNING_KEY``) both signed and verified, and every
gateway held it. Readers of this version never accept an HMAC signature. For the migration
only, writers may be given the old key as ``TOKENLEDGER_LEGACY_HMAC_KEY``: the workers and
``tokenledger budget`` then add the old signature beside the Ed25519 one (gateways and
workers not yet upgraded keep verifying), and ``tokenledger budget resign`` reads budgets
signed with the old key in order to publish them again with Ed25519. docs/security.md has
the steps; once every reader runs with public keys, the old key is dropped everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tokenledger.signing import (
    HMAC_HEADER,
    ISSUED_HEADER,
    Headers,
    HeaderValue,
    SigningKeyError,
    Verdict,
)
from tokenledger.signing import single_header as one

ENV = "TOKENLEDGER_LEGACY_HMAC_KEY"
KEY_ID_HEADER = "tokenledger-key-id"
MIN_KEY_CHARS = 32


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"tokenledger-key-id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class HmacKeys:
    """The old keys, ``current[,previous,...]`` as ``TOKENLEDGER_SIGNING_KEY`` held them."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys or any(len(k) < MIN_KEY_CHARS for k in self.keys):
            raise SigningKeyError(f"{ENV} must hold the old key(s), {MIN_KEY_CHARS}+ characters")


def legacy_keys(env: Mapping[str, str]) -> HmacKeys | None:
    value = env.get(ENV) or ""
    parts = tuple(p.strip().encode() for p in value.split(",") if p.strip())
    return HmacKeys(parts) if parts else None


def _mac(key: bytes, parts: Iterable[bytes]) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def _body(value: bytes | None) -> bytes:
    return value if value is not None else b"\x00tomb"


def _v2(key: bytes, topic: str, record_key: bytes | None, value: bytes | None, ms: int) -> bytes:
    parts = (
        topic.encode(),
        record_key or b"",
        _body(value),
        str(ms).encode(),
        _key_id(key).encode(),
    )
    return b"v2=" + _mac(key, parts).encode()


def _v1(key: bytes, topic: str, record_key: bytes | None, value: bytes | None) -> bytes:
    return b"v1=" + _mac(key, (topic.encode(), record_key or b"", _body(value))).encode()


def headers(
    keys: HmacKeys, topic: str, record_key: bytes | None, value: bytes | None, issued_ms: int
) -> list[tuple[str, HeaderValue]]:
    """The old signature's headers (the issue-time header is the Ed25519 signer's)."""
    key = keys.keys[0]
    return [
        (HMAC_HEADER, _v2(key, topic, record_key, value, issued_ms)),
        (KEY_ID_HEADER, _key_id(key).encode()),
    ]


def check(
    keys: HmacKeys, topic: str, record_key: bytes | None, value: bytes | None, headers: Headers
) -> Verdict:
    """The old readers' rule (v2; v1 only with a value), for ``budget resign`` to carry the
    budgets in force over to Ed25519."""
    signature = one(headers, HMAC_HEADER)
    if signature is None:
        return Verdict(False, reason="unsigned")
    if signature.startswith(b"v1="):
        for key in keys.keys:
            if value is not None and hmac.compare_digest(
                signature, _v1(key, topic, record_key, value)
            ):
                return Verdict(True, None, _key_id(key))
        return Verdict(False, reason="not signed with the old key (v1)")
    kid, issued = one(headers, KEY_ID_HEADER), one(headers, ISSUED_HEADER)
    if kid is None or issued is None or not issued.isdigit():
        return Verdict(False, reason="not signed with the old key (v2 headers incomplete)")
    for key in keys.keys:
        if hmac.compare_digest(_key_id(key).encode(), kid) and hmac.compare_digest(
            signature, _v2(key, topic, record_key, value, int(issued))
        ):
            return Verdict(True, int(issued), kid.decode())
    return Verdict(False, reason="not signed with the old key")

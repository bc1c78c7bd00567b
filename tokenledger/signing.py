"""Authority over budgets and signals: an HMAC-SHA256 signature in a Kafka header.

Budgets (written by ``tokenledger budget``) and block signals (written by the workers) can
stop a tenant's traffic, so readers must know who wrote them. With
``TOKENLEDGER_SIGNING_KEY`` set (32 characters or more, the same secret for the platform's
own components: budget admin, workers, gateways), writers sign each record and readers drop
any record whose signature is missing or wrong: a budget or a block written by anything
else is ignored, counted and logged. The signature covers the topic, the key and the value,
so a record cannot be replayed onto another topic or scope. Without the key nothing is
signed or checked (local development).

This complements Kafka ACLs (README: Security): ACLs stop an unauthorised principal from
writing at all; the signature stops a record that got onto the topic anyway from counting.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

HEADER = "tokenledger-signature"
ENV = "TOKENLEDGER_SIGNING_KEY"
MIN_KEY_CHARS = 32
HeaderValue = str | bytes | None
Headers = Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None
"""Kafka record headers as confluent-kafka hands them over (a list of pairs) or takes them."""


class SigningKeyError(ValueError):
    """The configured key cannot be used; the message says how to fix it."""


def signing_key(env: Mapping[str, str] | None = None) -> bytes | None:
    env = os.environ if env is None else env
    value = env.get(ENV) or ""
    if not value:
        return None
    if len(value) < MIN_KEY_CHARS:
        raise SigningKeyError(
            f"{ENV} is {len(value)} characters; use at least {MIN_KEY_CHARS} "
            "(e.g. the output of `openssl rand -hex 32`)"
        )
    return value.encode()


def sign(key: bytes, topic: str, record_key: bytes | None, value: bytes | None) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (topic.encode(), record_key or b"", value if value is not None else b"\x00tomb"):
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return b"v1=" + mac.hexdigest().encode()


def headers_for(key: bytes | None, topic: str, record_key: bytes | None,
                value: bytes | None) -> list[tuple[str, HeaderValue]] | None:  # fmt: skip
    """The headers to produce with, or None without a key."""
    return None if key is None else [(HEADER, sign(key, topic, record_key, value))]


def verify(
    key: bytes | None,
    topic: str,
    record_key: bytes | None,
    value: bytes | None,
    headers: Headers,
) -> bool:
    """True without a key; with one, True only for a record signed with it."""
    if key is None:
        return True
    expected = sign(key, topic, record_key, value)
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    given = [v.encode() if isinstance(v, str) else v for name, v in pairs
             if name == HEADER and v is not None]  # fmt: skip
    return len(given) == 1 and hmac.compare_digest(given[0], expected)

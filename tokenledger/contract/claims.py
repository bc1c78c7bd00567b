"""Claims on a logical request, the edge's ``/v1/claims`` API: what callers send and get.

Before generating, a caller claims ``(tenant_id, idempotency_key)`` with a fingerprint of the
request. One attempt holds the claim (a lease it renews); a retry with the same key waits
for it, or is told it is in flight, or gets the completed outcome (and the stored result
when the feature stores results); the same key with another fingerprint is a mismatch.
Keys are scoped by tenant: two tenants' equal keys are two claims.

The fingerprint is SHA-256 over canonical JSON of ``{"model", "input", "params"}``: strings
in Unicode NFC, keys sorted, no whitespace, UTF-8. Any language can compute it the same way
(README: claims over HTTP), or send a digest of its own (64 lowercase hex digits).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tokenledger.contract.common import Id, Name

DEFAULT_LEASE_S = 120.0
MAX_LEASE_S = 3600.0
DEFAULT_RESULT_TTL_S = 24 * 3600.0
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
MAX_USAGE_FIELDS = 32

Fingerprint = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="SHA-256 of the request's canonical JSON, 64 lowercase hex digits"),
]
Token = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Status = Literal["claimed", "in_flight", "completed", "mismatch", "free", "released", "lost"]


def fingerprint(model: str, input: Any, params: Mapping[str, Any] | None = None) -> str:  # noqa: A002
    """The request's fingerprint: what must match for a retry to be the same request."""
    doc = {"model": model, "input": _nfc(input), "params": _nfc(dict(params or {}))}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, Mapping):
        return {unicodedata.normalize("NFC", str(k)): _nfc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nfc(v) for v in value]
    return value


class ClaimBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: Name
    idempotency_key: Id


class LookRequest(ClaimBody):
    """``GET /v1/claims?tenant_id=&idempotency_key=[&wait=<s>]``: the key's state."""


class ClaimRequest(ClaimBody):
    """``POST /v1/claims`` (``?wait=<s>`` to wait for an attempt in flight)."""

    fingerprint: Fingerprint
    feature: Name | None = None
    route: Name | None = None
    lease_s: float = Field(DEFAULT_LEASE_S, ge=1.0, le=MAX_LEASE_S)


class RenewRequest(ClaimBody):
    """``POST /v1/claims/renew``: the holder extends its lease."""

    token: Token
    lease_s: float = Field(DEFAULT_LEASE_S, ge=1.0, le=MAX_LEASE_S)


class CompleteRequest(ClaimBody):
    """``POST /v1/claims/complete``: the holder's attempt succeeded. ``usage`` is its token
    counts (what a replayed retry reports), ``result_b64`` the response, kept only when the
    edge stores results for the claim's feature or route."""

    token: Token
    event_id: Id | None = None
    usage: dict[Name, int | str] = Field(default_factory=dict, max_length=MAX_USAGE_FIELDS)
    result_b64: str | None = None


class ReleaseRequest(ClaimBody):
    """``POST /v1/claims/release``: the holder's attempt failed; a retry may generate."""

    token: Token


def key_bytes(tenant_id: str, idempotency_key: str) -> bytes:
    """The claim's Kafka key (``["tenant", "key"]``): the tenant is part of every key."""
    return json.dumps([tenant_id, idempotency_key], separators=(",", ":")).encode()

"""What a claim's owner decides, as pure functions of the claim it holds and the clock.

A ``Claim`` is one logical request's record on ``tokenledger.claims.v1`` (its value; the key
is ``["tenant", "key"]``). It is ``in_flight`` while an attempt holds its lease and
``completed`` once the attempt succeeded; a released claim is a tombstone, so the key is
free. An in-flight claim whose lease ran out and a completed one past its TTL count as
free too: a dead owner's attempt stops blocking retries, and results do not live forever.

Each function returns the answer and the record to write (``None``: nothing changes,
``DELETE``: a tombstone); the owner writes it, waits for the broker's acknowledgement, and
only then answers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from tokenledger.contract.claims import (
    ClaimRequest,
    CompleteRequest,
    ReleaseRequest,
    RenewRequest,
    Status,
)

State = Literal["in_flight", "completed"]


@dataclass(frozen=True)
class Claim:
    tenant_id: str
    idempotency_key: str
    fingerprint: str
    state: State
    token: str
    lease_until_ms: int
    feature: str | None = None
    route: str | None = None
    event_id: str | None = None
    usage: dict[str, int | str] | None = None
    result_b64: str | None = None
    completed_at_ms: int | None = None
    expires_at_ms: int | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Claim:
        return cls(**json.loads(value))


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE: Final = _Delete()
Write = Claim | _Delete | None


@dataclass(frozen=True)
class Answer:
    status: Status
    claim: Claim | None = None
    result_stored: bool = False

    @property
    def http_status(self) -> int:
        return _HTTP[self.status]

    def as_json(self, include_result: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        c = self.claim
        if c is None:
            return body
        if self.status in ("claimed", "in_flight"):
            body["lease_expires_at"] = _iso(c.lease_until_ms)
        if self.status == "claimed":
            body["token"] = c.token
        if self.status == "completed":
            body["event_id"] = c.event_id
            body["usage"] = c.usage or {}
            body["completed_at"] = _iso(c.completed_at_ms or 0)
            if include_result:
                body["result_b64"] = c.result_b64
            else:
                body["result_stored"] = self.result_stored
        return body


_HTTP = {
    "claimed": 201,
    "in_flight": 409,
    "completed": 200,
    "mismatch": 422,
    "free": 200,
    "released": 200,
    "lost": 409,
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def live(claim: Claim | None, now_ms: int) -> Claim | None:
    """The claim if it still binds its key at ``now_ms``, else None (the key is free)."""
    if claim is None:
        return None
    if claim.state == "in_flight" and claim.lease_until_ms <= now_ms:
        return None
    if claim.state == "completed" and (claim.expires_at_ms or 0) <= now_ms:
        return None
    return claim


def claim(
    current: Claim | None, req: ClaimRequest, now_ms: int, token: str
) -> tuple[Answer, Write]:
    held = live(current, now_ms)
    if held is None:
        new = Claim(
            tenant_id=req.tenant_id,
            idempotency_key=req.idempotency_key,
            fingerprint=req.fingerprint,
            state="in_flight",
            token=token,
            lease_until_ms=now_ms + round(req.lease_s * 1000),
            feature=req.feature,
            route=req.route,
        )
        return Answer("claimed", new), new
    if held.fingerprint != req.fingerprint:
        return Answer("mismatch", held), None
    return Answer("completed" if held.state == "completed" else "in_flight", held), None


def _held_by(current: Claim | None, token: str) -> Claim | None:
    """The in-flight claim ``token`` holds. A lapsed lease still counts until another attempt
    claims the key (its token then differs): a slow attempt may still complete."""
    if current is None or current.state != "in_flight" or current.token != token:
        return None
    return current


def renew(current: Claim | None, req: RenewRequest, now_ms: int) -> tuple[Answer, Write]:
    held = _held_by(current, req.token)
    if held is None:
        return Answer("lost"), None
    new = replace(held, lease_until_ms=now_ms + round(req.lease_s * 1000))
    return Answer("claimed", new), new


def complete(
    current: Claim | None,
    req: CompleteRequest,
    now_ms: int,
    *,
    store_result: bool,
    ttl_ms: int,
) -> tuple[Answer, Write]:
    held = _held_by(current, req.token)
    if held is None:
        return Answer("lost"), None
    stored = store_result and req.result_b64 is not None
    new = replace(
        held,
        state="completed",
        event_id=req.event_id,
        usage=dict(req.usage),
        result_b64=req.result_b64 if stored else None,
        completed_at_ms=now_ms,
        expires_at_ms=now_ms + ttl_ms,
    )
    return Answer("completed", new, result_stored=stored), new


def release(current: Claim | None, req: ReleaseRequest) -> tuple[Answer, Write]:
    if _held_by(current, req.token) is None:
        return Answer("lost"), None
    return Answer("released"), DELETE


def look(current: Claim | None, now_ms: int) -> Answer:
    """``GET /v1/claims``: the key's state, no token."""
    held = live(current, now_ms)
    if held is None:
        return Answer("free")
    return Answer("completed" if held.state == "completed" else "in_flight", held)


def wake_at_ms(current: Claim | None) -> int | None:
    """When a waiter on this key should look again without news: its lease's end."""
    if current is None or current.state != "in_flight":
        return None
    return current.lease_until_ms

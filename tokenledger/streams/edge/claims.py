"""``/v1/claims``: claim, renew, complete, release and look, in HTTP terms.

The instance that owns the key's partition decides (tokenledger.streams.edge.claim_owner);
any other forwards the request there as it came (the owner checks the API key again) and
returns the owner's reply. ``?wait=<s>`` (at most ``max_wait_s``) holds a claim or a look
while another attempt is in flight: the answer is then that attempt's outcome, or the claim
itself when the attempt failed or its lease ran out.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from pydantic import ValidationError

from tokenledger.contract import claims as contract
from tokenledger.streams.edge import claim_state
from tokenledger.streams.edge.bodies import HttpError, Reply, json_reply
from tokenledger.streams.edge.claim_owner import ClaimKeeper, Decide, now_ms
from tokenledger.streams.edge.keys import Caller

FORWARDED = "X-Tokenledger-Claim-Forwarded"
OWNER = "X-Tokenledger-Claim-Owner"
"""On every decided answer: the URL of the instance that decided it."""
Forward = Callable[[str, str, Mapping[str, str], bytes | None, float], Awaitable[Reply]]
"""(owner URL with path and query, method, headers, body, seconds) -> the owner's reply."""
Decided = tuple[claim_state.Answer, claim_state.Write]
M = TypeVar("M", bound=contract.ClaimBody)


@dataclass(frozen=True)
class ClaimSettings:
    max_wait_s: float = 60.0
    """The longest ``?wait=`` a caller gets (longer asks are cut to this)."""
    store_results_for: frozenset[str] = frozenset()
    """Features or routes whose results are kept for replay; ``*``: every one."""
    max_result_bytes: int = contract.DEFAULT_MAX_RESULT_BYTES
    result_ttl_s: float = contract.DEFAULT_RESULT_TTL_S
    """How long a completed claim (and its result) answers retries."""

    def stores(self, claim: claim_state.Claim) -> bool:
        kept = self.store_results_for
        return "*" in kept or claim.feature in kept or claim.route in kept


@dataclass(frozen=True)
class _Op:
    path: str
    req: contract.ClaimBody
    decide: Decide
    wait_s: float = 0.0
    include_result: bool = True
    """Completed answers carry the stored result (claims, looks), or whether it was stored."""
    method: str = "POST"


class Claims:
    def __init__(
        self,
        keeper: ClaimKeeper,
        settings: ClaimSettings,
        caller: Callable[[Mapping[str, str]], Caller],
        forward: Forward,
    ) -> None:
        self.keeper = keeper
        self.settings = settings
        self.caller = caller
        self.forward = forward

    # -- the endpoints -------------------------------------------------------------------

    async def claim(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> Reply:
        req = self._read(headers, body, contract.ClaimRequest)

        def decide(current: claim_state.Claim | None, now: int) -> Decided:
            return claim_state.claim(current, req, now, secrets.token_hex(16))

        return await self._decided(_Op("/v1/claims", req, decide, self._wait(query)), headers, body)

    async def renew(self, headers: Mapping[str, str], body: bytes) -> Reply:
        req = self._read(headers, body, contract.RenewRequest)

        def decide(current: claim_state.Claim | None, now: int) -> Decided:
            return claim_state.renew(current, req, now)

        return await self._decided(_Op("/v1/claims/renew", req, decide), headers, body)

    async def complete(self, headers: Mapping[str, str], body: bytes) -> Reply:
        req = self._read(headers, body, contract.CompleteRequest)
        if req.result_b64 is not None:
            self._check_result(req.result_b64)
        ttl_ms = round(self.settings.result_ttl_s * 1000)

        def decide(current: claim_state.Claim | None, now: int) -> Decided:
            stores = current is not None and self.settings.stores(current)
            return claim_state.complete(current, req, now, store_result=stores, ttl_ms=ttl_ms)

        op = _Op("/v1/claims/complete", req, decide, include_result=False)
        return await self._decided(op, headers, body)

    async def release(self, headers: Mapping[str, str], body: bytes) -> Reply:
        req = self._read(headers, body, contract.ReleaseRequest)

        def decide(current: claim_state.Claim | None, now: int) -> Decided:
            return claim_state.release(current, req)

        return await self._decided(_Op("/v1/claims/release", req, decide), headers, body)

    async def look(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        caller = self.caller(headers)
        try:
            req = contract.LookRequest(
                tenant_id=query.get("tenant_id", ""),
                idempotency_key=query.get("idempotency_key", ""),
            )
        except ValidationError as exc:
            raise _invalid(exc) from None
        if not caller.may(req.tenant_id):
            raise _not_allowed(req.tenant_id)

        def decide(current: claim_state.Claim | None, now: int) -> Decided:
            return claim_state.look(current, now), None

        op = _Op("/v1/claims", req, decide, self._wait(query), method="GET")
        return await self._decided(op, headers, None)

    # -- routing and waiting -------------------------------------------------------------

    async def _decided(self, op: _Op, headers: Mapping[str, str], body: bytes | None) -> Reply:
        key = contract.key_bytes(op.req.tenant_id, op.req.idempotency_key)
        deadline = time.monotonic() + op.wait_s
        while True:
            route = self.keeper.owner(key)
            if route.where == "moving":
                await self.keeper.settled(2.0)
                route = self.keeper.owner(key)
            if route.url is not None:
                if headers.get(FORWARDED):
                    raise _moving()  # the sender thinks this instance owns it: not yet
                return await self._forward(route.url, op, headers, body, deadline)
            if route.partition is None or route.where != "here":
                raise _moving()
            answer = await self.keeper.decide(route.partition, key, op.decide)
            if answer is None:
                continue  # the partition moved while this waited for the key
            left = deadline - time.monotonic()
            if answer.status != "in_flight" or left <= 0:
                return _reply(answer, op, self.keeper.url)
            until = (claim_state.wake_at_ms(answer.claim) or 0) - now_ms()
            await self.keeper.changed(key, min(left, until / 1000 + 0.005))

    async def _forward(
        self,
        url: str,
        op: _Op,
        headers: Mapping[str, str],
        body: bytes | None,
        deadline: float,
    ) -> Reply:
        left = max(deadline - time.monotonic(), 0.0)
        fields = {}
        if op.method == "GET":
            fields = {"tenant_id": op.req.tenant_id, "idempotency_key": op.req.idempotency_key}
        if left > 0:
            fields["wait"] = f"{left:.3f}"
        path = op.path + (("?" + urlencode(fields)) if fields else "")
        sent = {"Authorization": headers.get("Authorization", ""), FORWARDED: "1"}
        if body is not None:
            sent["Content-Type"] = "application/json"
        return await self.forward(url + path, op.method, sent, body, left + 10.0)

    # -- reading requests ----------------------------------------------------------------

    def _read(self, headers: Mapping[str, str], body: bytes, model: type[M]) -> M:
        caller = self.caller(headers)
        try:
            req = model.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from None
        if not caller.may(req.tenant_id):
            raise _not_allowed(req.tenant_id)
        return req

    def _wait(self, query: Mapping[str, str]) -> float:
        raw = query.get("wait", "0")
        try:
            wait = float(raw)
        except ValueError:
            wait = -1.0
        if not math.isfinite(wait) or wait < 0:
            raise HttpError(400, f"wait={raw!r} is not a number of seconds (0 or more)")
        return min(wait, self.settings.max_wait_s)

    def _check_result(self, text: str) -> None:
        try:
            size = len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise HttpError(400, "result_b64 is not valid base64") from None
        if size > self.settings.max_result_bytes:
            raise HttpError(
                413,
                f"the result ({size:,} bytes) exceeds the limit of "
                f"{self.settings.max_result_bytes:,} bytes; complete without it",
                reason="too_large",
            )


_MESSAGES = {
    "in_flight": "another attempt with this key is generating; wait for it (?wait=<s>) or "
    "send it again after Retry-After",
    "mismatch": "this idempotency key was used for another request (its fingerprint "
    "differs); use a new key for a new request",
    "lost": "this token no longer holds the claim: it was completed or released, or its "
    "lease ran out and another attempt claimed the key",
}


def _reply(answer: claim_state.Answer, op: _Op, owner: str) -> Reply:
    body = answer.as_json(include_result=op.include_result)
    headers = {OWNER: owner}
    if answer.status in _MESSAGES:
        body["message"] = _MESSAGES[answer.status]
    if answer.status == "in_flight" and answer.claim is not None:
        left = (answer.claim.lease_until_ms - now_ms()) / 1000
        headers["Retry-After"] = str(max(1, min(5, math.ceil(left))))
    status = 200 if op.method == "GET" else answer.http_status
    return json_reply(status, body, headers)


def _moving() -> HttpError:
    return HttpError(
        503,
        "claims for this key are moving between edge instances; send it again in 1 s",
        {"Retry-After": "1"},
        reason="claims_moving",
    )


def _invalid(exc: ValidationError) -> HttpError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "the body"
    return HttpError(400, f"{where}: {first['msg']}", reason="bad_claim")


def _not_allowed(tenant_id: str) -> HttpError:
    return HttpError(
        403, f"this API key may not claim for tenant {tenant_id!r}", reason="tenant_not_allowed"
    )

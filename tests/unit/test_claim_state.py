"""The claim owner's decisions as pure functions of the claim and the clock."""

from __future__ import annotations

import hashlib

import pytest

from tokenledger.contract.claims import (
    ClaimRequest,
    CompleteRequest,
    ReleaseRequest,
    RenewRequest,
    fingerprint,
    key_bytes,
)
from tokenledger.streams.edge import claim_state
from tokenledger.streams.edge.claim_state import DELETE, Claim

FP = fingerprint("gpt-4o", "hello", {"max_output_tokens": 10})
T0 = 1_800_000_000_000
TOKEN = "a" * 32


def claimed(lease_s: float = 120.0) -> Claim:
    req = ClaimRequest(tenant_id="acme", idempotency_key="k", fingerprint=FP, lease_s=lease_s)
    answer, write = claim_state.claim(None, req, T0, TOKEN)
    assert answer.status == "claimed" and isinstance(write, Claim)
    return write


def test_a_free_key_is_claimed_with_its_lease() -> None:
    c = claimed(lease_s=2.5)
    assert (c.state, c.token, c.lease_until_ms) == ("in_flight", TOKEN, T0 + 2500)
    assert Claim.from_bytes(c.to_bytes()) == c


@pytest.mark.parametrize(("at", "status"), [(T0 + 119_999, "in_flight"), (T0 + 120_000, "claimed")])
def test_a_held_claim_binds_until_its_lease_ends(at: int, status: str) -> None:
    req = ClaimRequest(tenant_id="acme", idempotency_key="k", fingerprint=FP)
    answer, write = claim_state.claim(claimed(), req, at, "b" * 32)
    assert answer.status == status
    assert (write is None) == (status == "in_flight")


def test_another_fingerprint_is_a_mismatch_and_changes_nothing() -> None:
    other = ClaimRequest(tenant_id="acme", idempotency_key="k", fingerprint="0" * 64)
    answer, write = claim_state.claim(claimed(), other, T0 + 1, "b" * 32)
    assert (answer.status, answer.http_status, write) == ("mismatch", 422, None)


def test_completed_replays_until_its_ttl_then_frees_the_key() -> None:
    done_req = CompleteRequest(
        tenant_id="acme", idempotency_key="k", token=TOKEN, event_id="ev1", result_b64="aGk="
    )
    answer, done = claim_state.complete(claimed(), done_req, T0 + 5, store_result=True, ttl_ms=1000)
    assert isinstance(done, Claim) and answer.result_stored
    assert (done.state, done.result_b64, done.expires_at_ms) == ("completed", "aGk=", T0 + 1005)
    req = ClaimRequest(tenant_id="acme", idempotency_key="k", fingerprint=FP)
    replay, _ = claim_state.claim(done, req, T0 + 1004, "b" * 32)
    assert replay.as_json()["result_b64"] == "aGk=" and replay.http_status == 200
    assert claim_state.claim(done, req, T0 + 1005, "b" * 32)[0].status == "claimed"


def test_results_are_kept_only_when_the_feature_stores_them() -> None:
    req = CompleteRequest(tenant_id="acme", idempotency_key="k", token=TOKEN, result_b64="aGk=")
    answer, done = claim_state.complete(claimed(), req, T0, store_result=False, ttl_ms=1000)
    assert isinstance(done, Claim) and done.result_b64 is None
    assert answer.as_json(include_result=False)["result_stored"] is False


def test_only_the_holder_renews_completes_or_releases() -> None:
    c = claimed()
    wrong = "f" * 32
    assert (
        claim_state.renew(c, RenewRequest(tenant_id="acme", idempotency_key="k", token=wrong), T0)[
            0
        ].status
        == "lost"
    )
    renewed = claim_state.renew(
        c, RenewRequest(tenant_id="acme", idempotency_key="k", token=TOKEN, lease_s=10), T0 + 7
    )[1]
    assert isinstance(renewed, Claim) and renewed.lease_until_ms == T0 + 10_007
    assert claim_state.release(
        c, ReleaseRequest(tenant_id="acme", idempotency_key="k", token=TOKEN)
    ) == (
        claim_state.Answer("released"),
        DELETE,
    )
    assert (
        claim_state.release(
            None, ReleaseRequest(tenant_id="acme", idempotency_key="k", token=TOKEN)
        )[0].status
        == "lost"
    )


def test_a_lapsed_lease_still_completes_until_another_attempt_claims() -> None:
    c = claimed(lease_s=1)
    req = CompleteRequest(tenant_id="acme", idempotency_key="k", token=TOKEN, event_id="late")
    assert (
        claim_state.complete(c, req, T0 + 5000, store_result=False, ttl_ms=10)[0].status
        == "completed"
    )
    retry = ClaimRequest(tenant_id="acme", idempotency_key="k", fingerprint=FP)
    taken = claim_state.claim(c, retry, T0 + 5000, "b" * 32)[1]
    assert isinstance(taken, Claim) and taken.token == "b" * 32
    assert (
        claim_state.complete(taken, req, T0 + 5001, store_result=False, ttl_ms=10)[0].status
        == "lost"
    )


def test_keys_and_fingerprints_are_canonical() -> None:
    assert key_bytes("acme", "k") == b'["acme","k"]' != key_bytes("globex", "k")
    # NFC: a composed and a decomposed é are the same request; key order never matters
    assert fingerprint("m", "caf\u00e9", {"a": 1, "b": 2}) == fingerprint(
        "m", "cafe\u0301", {"b": 2, "a": 1}
    )
    assert fingerprint("m", "hello") != fingerprint("m", "hello", {"temperature": 0})
    # the documented text, so other languages can compute the same digest
    doc = '{"input":"\u00e9","model":"m","params":{"n":1}}'
    assert fingerprint("m", "e\u0301", {"n": 1}) == hashlib.sha256(doc.encode()).hexdigest()

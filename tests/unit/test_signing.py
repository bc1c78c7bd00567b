"""Ed25519 signatures over budgets and signals: what verifies with public keys only and what
is refused (with the reason), rings by key id, signed issue times, and the old HMAC
records, which readers refuse unless a migration dual-signs them."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.helpers.paths import ROOT, sdk_modules
from tests.helpers.signing_keys import ring, signer
from tokenledger.signing import (
    HEADER,
    ISSUED_HEADER,
    Headers,
    PublicKeyring,
    check,
    public_keys,
    public_text,
    signed_bytes,
    verify,
)
from tokenledger.streams.admin import hmac_migration
from tokenledger.streams.admin.signer import Signer

WORKER, ADMIN, STRANGER = signer(), signer(), signer()
TRUSTED = ring(WORKER, ADMIN)
T = 1_764_000_000_000
BLOCK = b'{"state":"block"}'
OLD = hmac_migration.HmacKeys((b"k" * 40,))


def reason(headers: Headers, *, key: bytes = b"tenant/a", value: bytes | None = BLOCK) -> str:
    return check(TRUSTED, "t.signals", key, value, headers).reason


def test_a_signed_record_verifies_with_public_keys_and_any_change_breaks_it() -> None:
    headers = WORKER.headers("t.signals", b"tenant/a", BLOCK, T)
    verdict = check(TRUSTED, "t.signals", b"tenant/a", BLOCK, headers)
    assert (verdict.ok, verdict.issued_ms, verdict.key_id) == (True, T, WORKER.key_id)
    assert verify(TRUSTED, "t.signals", b"tenant/a", BLOCK, dict(headers))
    broken = f"the signature does not match key {WORKER.key_id} (altered or forged)"
    assert reason(headers, value=b'{"state":"allow"}') == broken
    assert reason(headers, key=b"tenant/b") == broken
    assert check(TRUSTED, "t.budgets", b"tenant/a", BLOCK, headers).reason == broken
    assert reason(None) == "unsigned"
    assert reason(headers * 2) == "more than one tokenledger-ed25519 header"
    assert not verify(ring(ADMIN), "t.signals", b"tenant/a", BLOCK, headers)


def test_a_record_signed_by_any_other_key_is_refused_by_name() -> None:
    forged = STRANGER.headers("t.signals", b"tenant/a", BLOCK, T)
    assert reason(forged) == (
        f"signed by key {STRANGER.key_id!r}, which is not in TOKENLEDGER_PUBLIC_KEYS"
    )
    # the stranger's signature under a trusted key's id does not pass either
    header = dict(forged)[HEADER]
    assert isinstance(header, bytes)
    _, sig = header.decode().split(":")
    posing = [(HEADER, f"{WORKER.key_id}:{sig}".encode()), (ISSUED_HEADER, str(T).encode())]
    assert reason(posing) == f"the signature does not match key {WORKER.key_id} (altered or forged)"


def test_the_issue_time_is_signed_so_a_copy_cannot_be_made_newer() -> None:
    headers = dict(ADMIN.headers("t", b"tenant/a", None, T))
    newer = {**headers, ISSUED_HEADER: str(T + 86_400_000).encode()}
    assert check(TRUSTED, "t", b"tenant/a", None, headers).issued_ms == T
    assert not verify(TRUSTED, "t", b"tenant/a", None, newer)
    del headers[ISSUED_HEADER]
    assert check(TRUSTED, "t", b"tenant/a", None, headers).reason == (
        "no signed issue time (tokenledger-issued-ms)"
    )


def test_parts_are_length_prefixed_and_tombstones_differ_from_empty_values() -> None:
    assert signed_bytes("t", b"ab", b"c", T, "k") != signed_bytes("t", b"a", b"bc", T, "k")
    assert signed_bytes("t", b"k", None, T, "k") != signed_bytes("t", b"k", b"", T, "k")
    tomb = WORKER.headers("t", b"k", None, T)
    assert not verify(TRUSTED, "t", b"k", b"", tomb) and verify(TRUSTED, "t", b"k", None, tomb)


def test_a_ring_accepts_each_of_its_keys_by_id_and_a_retired_one_no_more() -> None:
    rotated = Signer(Ed25519PrivateKey.generate())
    during = ring(WORKER, rotated)
    assert during.ids == (WORKER.key_id, rotated.key_id)
    by_old, by_new = (s.headers("t", b"k", BLOCK, T) for s in (WORKER, rotated))
    assert check(during, "t", b"k", BLOCK, by_old).key_id == WORKER.key_id
    assert check(during, "t", b"k", BLOCK, by_new).key_id == rotated.key_id
    after = ring(rotated)
    assert verify(after, "t", b"k", BLOCK, by_new) and not verify(after, "t", b"k", BLOCK, by_old)
    assert PublicKeyring.parse(public_text(rotated.private.public_key())).ids == (rotated.key_id,)


def test_an_hmac_signed_record_is_refused_unless_dual_signed_for_the_migration() -> None:
    old = [
        *hmac_migration.headers(OLD, "t", b"tenant/a", BLOCK, T),
        (ISSUED_HEADER, str(T).encode()),
    ]
    assert hmac_migration.check(OLD, "t", b"tenant/a", BLOCK, old).ok  # what old readers took
    assert check(TRUSTED, "t", b"tenant/a", BLOCK, old).reason == (
        "signed with the shared HMAC key, which readers no longer accept; re-sign it with "
        "Ed25519 (docs/security.md)"
    )
    dual = Signer(WORKER.private, OLD).headers("t", b"tenant/a", BLOCK, T)
    assert check(TRUSTED, "t", b"tenant/a", BLOCK, dual).key_id == WORKER.key_id
    assert hmac_migration.check(OLD, "t", b"tenant/a", BLOCK, dual).issued_ms == T
    assert not hmac_migration.check(OLD, "t", b"tenant/a", b"{}", dual).ok


def test_without_public_keys_nothing_is_checked() -> None:
    assert public_keys({}) is None
    assert verify(None, "t", b"k", b"v", None)
    assert check(None, "t", b"k", b"v", [(ISSUED_HEADER, b"7")]).issued_ms == 7


def test_the_ring_comes_from_the_environment_and_never_echoes_a_bad_key() -> None:
    text = f"{public_text(WORKER.private.public_key())}, {public_text(ADMIN.private.public_key())}"
    assert public_keys({"TOKENLEDGER_PUBLIC_KEYS": text}) == TRUSTED
    with pytest.raises(ValueError) as bad:
        public_keys({"TOKENLEDGER_PUBLIC_KEYS": f"{text},ed25519:c2VjcmV0LXZhbHVl"})
    assert str(bad.value) == (
        "key 3 in TOKENLEDGER_PUBLIC_KEYS is not a valid Ed25519 public key (32 bytes, base64)"
    )
    with pytest.raises(ValueError, match="^key 1 in TOKENLEDGER_PUBLIC_KEYS is not a public key"):
        public_keys({"TOKENLEDGER_PUBLIC_KEYS": "hunter2-secret"})
    assert "hunter2" not in str(bad.value)


def test_the_old_shared_key_setting_stops_a_reader_instead_of_silently_checking_nothing() -> None:
    with pytest.raises(ValueError) as retired:
        public_keys({"TOKENLEDGER_SIGNING_KEY": "k" * 40})
    assert str(retired.value) == (
        "TOKENLEDGER_SIGNING_KEY (a shared HMAC key) is no longer read: readers take "
        "TOKENLEDGER_PUBLIC_KEYS, writers a private key file (docs/security.md, migrating "
        "from HMAC)"
    )


def test_a_reader_cannot_be_given_a_private_key() -> None:
    from tokenledger.guard import BudgetGuard
    from tokenledger.signal_book import SignalBook
    from tokenledger.streams.worker.budget_definitions import BudgetDefinitions

    private = Ed25519PrivateKey.generate()
    for given in (private, WORKER, b"k" * 40, "k" * 40):
        with pytest.raises(ValueError, match="readers never hold a signing key"):
            BudgetGuard(public_keys=given)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="readers never hold a signing key"):
            SignalBook(topic="signals", public_keys=given)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes Ed25519 public keys only, not Ed25519PrivateKey"):
        PublicKeyring((private,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes Ed25519 public keys only"):
        BudgetDefinitions("budgets", PublicKeyring((private,)))  # type: ignore[arg-type]
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    with pytest.raises(ValueError) as pasted:
        public_keys({"TOKENLEDGER_PUBLIC_KEYS": pem})
    assert str(pasted.value) == (
        "TOKENLEDGER_PUBLIC_KEYS holds a private key; readers take public keys only "
        "(print them with `tokenledger keys public KEYFILE`)"
    )


def test_the_sdk_holds_no_code_that_could_sign() -> None:
    """Gateways run the SDK: it has no secret-key primitive a compromised host could use."""
    found = {
        f"{path.relative_to(ROOT)}: {word}"
        for path in sdk_modules()
        for word in ("import hmac", "Ed25519PrivateKey", "load_pem_private_key", ".sign(")
        if word in path.read_text()
    }
    assert found == set()

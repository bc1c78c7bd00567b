"""Signatures over budgets and signals: what verifies and what does not, key rings and key
ids, signed issue times, and records signed before issue times were."""

from __future__ import annotations

import pytest

from tokenledger.signing import (
    HEADER,
    ISSUED_HEADER,
    KEY_ID_HEADER,
    Keyring,
    SigningKeyError,
    check,
    headers_for,
    key_id,
    keyring,
    sign,
    sign_v1,
    verify,
)

KEY = b"s" * 32
OLD = b"o" * 32
T = 1_764_000_000_000
BLOCK = b'{"state":"block"}'


def test_a_signed_record_verifies_and_any_change_breaks_it() -> None:
    headers = headers_for(KEY, "t.signals", b"tenant/a", BLOCK, T)
    assert headers is not None
    assert check(KEY, "t.signals", b"tenant/a", BLOCK, headers).issued_ms == T
    assert verify(KEY, "t.signals", b"tenant/a", BLOCK, dict(headers))
    assert not verify(KEY, "t.signals", b"tenant/a", b'{"state":"allow"}', headers)
    assert not verify(KEY, "t.signals", b"tenant/b", BLOCK, headers)
    assert not verify(KEY, "t.budgets", b"tenant/a", BLOCK, headers)
    assert not verify(b"x" * 32, "t.signals", b"tenant/a", BLOCK, headers)
    assert not verify(KEY, "t.signals", b"tenant/a", BLOCK, None)
    assert not verify(KEY, "t.signals", b"tenant/a", BLOCK, headers * 2)


def test_the_issue_time_is_signed_so_a_copy_cannot_be_made_newer() -> None:
    headers = dict(headers_for(KEY, "t", b"tenant/a", None, T) or [])
    newer = {**headers, ISSUED_HEADER: str(T + 86_400_000).encode()}
    assert check(KEY, "t", b"tenant/a", None, headers).issued_ms == T
    assert not verify(KEY, "t", b"tenant/a", None, newer)


def test_parts_are_length_prefixed_and_tombstones_differ_from_empty_values() -> None:
    assert sign(KEY, "t", b"ab", b"c", T) != sign(KEY, "t", b"a", b"bc", T)
    assert sign(KEY, "t", b"k", None, T) != sign(KEY, "t", b"k", b"", T)
    assert headers_for(KEY, "t", b"k", None, T) == [
        (HEADER, sign(KEY, "t", b"k", None, T)), (KEY_ID_HEADER, key_id(KEY).encode()),
        (ISSUED_HEADER, str(T).encode())]  # fmt: skip


def test_a_ring_signs_with_its_first_key_and_accepts_each_of_its_keys() -> None:
    rotating = Keyring((KEY, OLD))
    by_new = headers_for(rotating, "t", b"k", BLOCK, T)
    by_old = headers_for(OLD, "t", b"k", BLOCK, T)
    assert dict(by_new or [])[KEY_ID_HEADER] == key_id(KEY).encode()
    assert check(rotating, "t", b"k", BLOCK, by_old).key_id == key_id(OLD)
    assert verify(OLD, "t", b"k", BLOCK, by_old) and not verify(OLD, "t", b"k", BLOCK, by_new)
    assert not verify(KEY, "t", b"k", BLOCK, by_old)  # the old key, once retired
    assert key_id(KEY) != key_id(OLD) and KEY.decode() not in key_id(KEY)


def test_v1_records_still_count_with_a_value_but_never_as_a_tombstone() -> None:
    v1 = [(HEADER, sign_v1(KEY, "t", b"k", BLOCK))]
    verdict = check(KEY, "t", b"k", BLOCK, v1)
    assert (verdict.ok, verdict.issued_ms, verdict.key_id) == (True, None, key_id(KEY))
    tomb = [(HEADER, sign_v1(KEY, "t", b"k", None))]
    assert not verify(KEY, "t", b"k", None, tomb)


def test_without_a_key_nothing_is_signed_or_checked() -> None:
    assert keyring({}) is None
    assert headers_for(None, "t", b"k", b"v", T) is None
    assert verify(None, "t", b"k", b"v", None)


def test_the_keyring_comes_from_the_environment_current_first() -> None:
    ring = keyring({"TOKENLEDGER_SIGNING_KEY": f"{KEY.decode()}, {OLD.decode()}"})
    assert ring == Keyring((KEY, OLD)) and ring.ids == (key_id(KEY), key_id(OLD))
    with pytest.raises(SigningKeyError, match="use at least 32"):
        keyring({"TOKENLEDGER_SIGNING_KEY": "short"})
    with pytest.raises(SigningKeyError, match="use at least 32"):
        keyring({"TOKENLEDGER_SIGNING_KEY": f"{KEY.decode()},short"})

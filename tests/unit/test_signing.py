"""Signatures over budgets and signals: what verifies and what does not."""

from __future__ import annotations

import pytest

from tokenledger.signing import HEADER, SigningKeyError, headers_for, sign, signing_key, verify

KEY = b"s" * 32


def test_a_signed_record_verifies_and_any_change_breaks_it() -> None:
    headers = headers_for(KEY, "t.signals", b"tenant/a", b'{"state":"block"}')
    assert headers is not None
    assert verify(KEY, "t.signals", b"tenant/a", b'{"state":"block"}', headers)
    assert verify(KEY, "t.signals", b"tenant/a", b'{"state":"block"}', dict(headers))
    assert not verify(KEY, "t.signals", b"tenant/a", b'{"state":"allow"}', headers)
    assert not verify(KEY, "t.signals", b"tenant/b", b'{"state":"block"}', headers)
    assert not verify(KEY, "t.budgets", b"tenant/a", b'{"state":"block"}', headers)
    assert not verify(b"x" * 32, "t.signals", b"tenant/a", b'{"state":"block"}', headers)
    assert not verify(KEY, "t.signals", b"tenant/a", b'{"state":"block"}', None)
    assert not verify(KEY, "t.signals", b"tenant/a", b'{"state":"block"}', headers * 2)


def test_parts_are_length_prefixed_and_tombstones_differ_from_empty_values() -> None:
    assert sign(KEY, "t", b"ab", b"c") != sign(KEY, "t", b"a", b"bc")
    assert sign(KEY, "t", b"k", None) != sign(KEY, "t", b"k", b"")
    tomb = headers_for(KEY, "t", b"k", None)
    assert tomb == [(HEADER, sign(KEY, "t", b"k", None))] and verify(KEY, "t", b"k", None, tomb)


def test_without_a_key_nothing_is_signed_or_checked() -> None:
    assert signing_key({}) is None
    assert headers_for(None, "t", b"k", b"v") is None
    assert verify(None, "t", b"k", b"v", None)


def test_a_short_key_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(SigningKeyError, match="use at least 32"):
        signing_key({"TOKENLEDGER_SIGNING_KEY": "short"})
    assert signing_key({"TOKENLEDGER_SIGNING_KEY": "z" * 32}) == b"z" * 32

"""Exact-cache keys: stable, normalized, and never shared between tenants."""

from __future__ import annotations

from typing import Any

import pytest

from tokenledger.cache_keys import cache_key, normalize_input

BASE: dict[str, Any] = {
    "tenant_id": "acme",
    "user_scope": "u-1",
    "prompt_version": "v3",
    "model_version": "gpt-4o-2024-08-06",
    "input": "What is our refund policy?",
    "corpus_version": "kb-2026-11-01",
}


def test_key_is_stable_and_pinned() -> None:
    key = cache_key(**BASE)
    assert key == cache_key(**BASE)
    assert key.startswith("acme:v1:") and len(key.split(":")[2]) == 64
    # pinned: a change here invalidates every cache; it must be deliberate
    assert key == "acme:v1:" + _expected_digest()


def _expected_digest() -> str:
    import hashlib

    h = hashlib.sha256()
    for field in (
        "v1",
        "acme",
        "u-1",
        "v3",
        "gpt-4o-2024-08-06",
        "kb-2026-11-01",
        "What is our refund policy?",
    ):
        h.update(len(field.encode()).to_bytes(8, "big") + field.encode())
    return h.hexdigest()


def test_whitespace_and_unicode_forms_normalize_to_one_key() -> None:
    variants = [
        "  What is our\n\trefund   policy?  ",
        "What is our refund policy?",
        "What is our\u00a0refund policy?",  # a no-break space: NFKC makes it a space
    ]
    assert len({cache_key(**{**BASE, "input": v}) for v in variants}) == 1
    assert cache_key(**{**BASE, "input": "what is our refund policy?"}) != cache_key(**BASE)


@pytest.mark.parametrize(
    "field",
    ["tenant_id", "user_scope", "prompt_version", "model_version", "corpus_version", "input"],
)
def test_every_field_changes_the_key(field: str) -> None:
    assert cache_key(**{**BASE, field: BASE[field] + "x"}) != cache_key(**BASE)


def test_tenants_never_share_a_key_even_with_shifted_fields() -> None:
    a = cache_key(**{**BASE, "tenant_id": "ac", "user_scope": "meu-1"})
    b = cache_key(**{**BASE, "tenant_id": "acme", "user_scope": "u-1"})
    assert a != b and a.split(":")[0] != b.split(":")[0]
    with pytest.raises(ValueError, match="needs a tenant_id"):
        cache_key(**{**BASE, "tenant_id": ""})


def test_chat_messages_ignore_key_order_and_spacing() -> None:
    one = [{"role": "user", "content": "Hi   there"}]
    two = [{"content": "Hi there ", "role": "user"}]
    assert normalize_input(one) == normalize_input(two)
    assert cache_key(**{**BASE, "input": one}) == cache_key(**{**BASE, "input": two})

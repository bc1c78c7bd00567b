"""Stable keys for an exact-match response cache.

A key hashes everything that changes the answer: tenant, user scope, prompt version, model
version, the normalized input and the retrieval corpus version. Fields are length-prefixed
before hashing, so no two different field tuples share a byte string, and the tenant is
also the key's visible prefix: two tenants can never produce the same key.

Normalization of the input (documented, stable across releases of this format "v1"):
Unicode NFKC, every run of whitespace (spaces, tabs, newlines) becomes one space, leading
and trailing whitespace is dropped. Case is kept: "Paris" and "paris" may deserve
different answers. A list of chat messages is normalized message by message and encoded
as canonical JSON (sorted keys), so dict ordering never changes a key.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

KEY_VERSION = "v1"
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def normalize_input(value: str | Sequence[Mapping[str, Any]]) -> str:
    """The canonical text of a prompt string or a list of chat messages."""
    if isinstance(value, str):
        return normalize_text(value)
    return json.dumps([_normalize_json(m) for m in value], sort_keys=True, ensure_ascii=False)


def _normalize_json(value: Any) -> Any:
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, Mapping):
        return {str(k): _normalize_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize_json(v) for v in value]
    return value


def cache_key(
    *,
    tenant_id: str,
    user_scope: str,
    prompt_version: str,
    model_version: str,
    input: str | Sequence[Mapping[str, Any]],  # noqa: A002 - the guide's name for it
    corpus_version: str = "",
) -> str:
    """``<tenant_id>:v1:<sha256 hex>`` for this exact request."""
    if not tenant_id:
        raise ValueError("cache_key needs a tenant_id: keys are never shared across tenants")
    digest = hashlib.sha256()
    for field in (
        KEY_VERSION,
        tenant_id,
        user_scope,
        prompt_version,
        model_version,
        corpus_version,
        normalize_input(input),
    ):
        data = field.encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return f"{tenant_id}:{KEY_VERSION}:{digest.hexdigest()}"

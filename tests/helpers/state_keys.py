"""The worker's state key layout for remembered ids, written out independently of the code:
a changed layout would forget every id held across an upgrade, so tests pin it."""

from __future__ import annotations

from hashlib import blake2b


def scoped(prefix: str, tenant_id: str, value: str) -> str:
    """A tenant's id (I: event id, G: idempotency key): one 16-byte BLAKE2b of
    "<tenant> <id>", in hex."""
    return prefix + blake2b(f"{tenant_id} {value}".encode(), digest_size=16).hexdigest()


def unscoped(prefix: str, value: str) -> str:
    """An id as releases before tenant scoping kept it (E: event id, K: idempotency key)."""
    return prefix + blake2b(value.encode(), digest_size=16).hexdigest()

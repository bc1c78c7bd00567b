"""API keys: which service is calling, and for which tenants it may report and ask.

Keys are random tokens (``tlk_`` + 43 URL-safe characters, 256 bits) handed to a service
once; the edge stores only their SHA-256 (a fast hash is right for keys of full entropy).
The key list is JSON, in a file (``--keys`` / TOKENLEDGER_EDGE_KEYS_FILE) or inline in
TOKENLEDGER_EDGE_KEYS::

    {"keys": [{"service": "checkout", "sha256": "<64 hex>", "tenants": ["acme", "globex"]},
              {"service": "gateway", "sha256": "<64 hex>", "tenants": ["*"]}]}

``"*"`` stands for every tenant. A key writes events of its own service only (the ``service``
of an event, ``service.name`` of a span); ``"service": "*"`` is a key for any service, for a
collector or a gateway that forwards many. ``tokenledger edge-key --service S --tenant T``
makes a key and prints the entry to add.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tokenledger.contract.names import name_problem
from tokenledger.streams.errors import UserError

PREFIX = "tlk_"
ANY = "*"


@dataclass(frozen=True)
class Caller:
    service: str
    tenants: frozenset[str]

    def may(self, tenant_id: str) -> bool:
        return ANY in self.tenants or tenant_id in self.tenants

    def writes_as(self, service: str) -> bool:
        return self.service in (ANY, service)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def grant_problem(service: str, tenants: list[str]) -> str | None:
    """Why a key cannot be granted to ``service`` for ``tenants`` (None when it can): each is
    a name, or ``"*"``."""
    for what, value in [("service", service), *(("tenant", t) for t in tenants)]:
        problem = None if value == ANY else name_problem(value)
        if problem is not None:
            return f"{what} {value!r}: {problem}"
    return None


def entry(service: str, tenants: list[str], key: str) -> dict[str, object]:
    """The key list entry for ``key`` (what the edge stores: never the key itself)."""
    return {"service": service, "sha256": digest(key), "tenants": sorted(set(tenants))}


class ApiKeys:
    def __init__(self, callers: Mapping[str, Caller]) -> None:
        self._by_digest = dict(callers)

    def __len__(self) -> int:
        return len(self._by_digest)

    def caller(self, presented: str | None) -> Caller | None:
        """The caller a presented key names, or None for a missing or unknown key."""
        if not presented:
            return None
        return self._by_digest.get(digest(presented))

    @classmethod
    def parse(cls, text: str, where: str) -> ApiKeys:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{where} is not JSON ({exc.msg} at line {exc.lineno}); "
                'write {"keys": [{"service": ..., "sha256": ..., '
                '"tenants": [...]}]}'
            ) from None
        items = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise UserError(f'{where} needs a "keys" list; see `tokenledger edge-key --help`')
        callers: dict[str, Caller] = {}
        for i, item in enumerate(items):
            callers.update([_caller(item, f"{where} keys[{i}]")])
        return cls(callers)

    @classmethod
    def load(cls, env: Mapping[str, str], path: Path | None = None) -> ApiKeys:
        """From ``path``, else TOKENLEDGER_EDGE_KEYS_FILE, else TOKENLEDGER_EDGE_KEYS."""
        file = path or (
            Path(env["TOKENLEDGER_EDGE_KEYS_FILE"])
            if env.get("TOKENLEDGER_EDGE_KEYS_FILE")
            else None
        )
        if file is not None:
            try:
                text = file.read_text()
            except OSError as exc:
                raise UserError(f"cannot read the key file {file}: {exc.strerror}") from None
            keys = cls.parse(text, str(file))
        elif env.get("TOKENLEDGER_EDGE_KEYS"):
            keys = cls.parse(env["TOKENLEDGER_EDGE_KEYS"], "TOKENLEDGER_EDGE_KEYS")
        else:
            raise UserError(
                "no API keys: make one with `tokenledger edge-key --service NAME "
                "--tenant TENANT > keys.json` and pass --keys keys.json"
            )
        if not keys:
            raise UserError("the key list is empty: every request would get 401; add a key")
        return keys


def _caller(item: object, where: str) -> tuple[str, Caller]:
    if not isinstance(item, dict):
        raise UserError(f"{where} is not an object")
    service, sha, tenants = item.get("service"), item.get("sha256"), item.get("tenants")
    if not isinstance(service, str):
        raise UserError(f'{where}: service must be the name of a service, or "*" for any')
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise UserError(f"{where}: sha256 must be 64 lowercase hex digits (the key's SHA-256)")
    if (
        not isinstance(tenants, list)
        or not tenants
        or not all(isinstance(t, str) and t for t in tenants)
    ):
        raise UserError(f'{where}: tenants must be a non-empty list of tenant ids or ["*"]')
    problem = grant_problem(service, tenants)
    if problem is not None:
        raise UserError(f"{where}: {problem}")
    return sha, Caller(service, frozenset(tenants))


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key of a request: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``."""
    auth = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("X-Api-Key") or headers.get("x-api-key") or None

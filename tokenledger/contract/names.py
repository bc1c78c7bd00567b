"""Names (tenant, feature, service, route, ...) and the scopes built from them.

A budget's scope, the key of its budget and signal records, joins names with ``/``:
``tenant/<tenant>`` or ``tenant/<tenant>/feature/<feature>``. A name therefore never holds
``/``: were ``acme/feature/answer`` a tenant, its scope would be acme's ``answer`` scope.
Model names keep their ``/`` (``openai/gpt-4o``, ``models/gemini-2.5-pro``): no scope holds
a model. ``parse_scope`` is the one reader of scopes, for the SDK and the server alike.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

SCOPE_SEPARATOR = "/"
NAME_CHARS = "letters, digits and . _ : @ + -"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$"
"""Identifiers are short and printable: they reach ClickHouse, Grafana variables, Kafka keys
and scopes, so anything else is rejected rather than escaped."""
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,127}$"
"""A model name: a name that may also hold ``/`` (routing prefixes, provider paths)."""

_NAME = re.compile(NAME_PATTERN)
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._:@+\-]")
_NOT_IN_MODEL_NAME = re.compile(r"[^A-Za-z0-9._:/@+\-]")
_LEADING = re.compile(r"^[^A-Za-z0-9]+")
_PATTERNS = {NAME_PATTERN: False, "^$|" + NAME_PATTERN: False, MODEL_NAME_PATTERN: True}


def is_name(value: str) -> bool:
    return _NAME.fullmatch(value) is not None


def name_problem(value: str, *, model: bool = False) -> str | None:
    """Why ``value`` is not a name (a model name with ``model``), in words; None when it is."""
    if not value:
        return "a name cannot be empty"
    if SCOPE_SEPARATOR in value and not model:
        return "'/' is the scope separator and cannot be part of a name (use - or . instead)"
    if len(value) > 128:
        return "a name is at most 128 characters"
    if not value[0].isascii() or not value[0].isalnum():
        return "a name starts with a letter or a digit"
    bad = (_NOT_IN_MODEL_NAME if model else _NOT_IN_NAME).search(value)
    if bad is not None:
        return f"{bad.group()!r} cannot be part of a name ({NAME_CHARS} only)"
    return None


def error_message(error: Mapping[str, Any]) -> str:
    """The message of one pydantic error (``ValidationError.errors()``): for a name, what is
    wrong with it; otherwise pydantic's own."""
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if error.get("type") == "string_pattern_mismatch" and isinstance(value, str):
        model = _PATTERNS.get(str(ctx.get("pattern")))
        if model is not None:
            return name_problem(value, model=model) or str(error["msg"])
    return str(error["msg"])


def as_name(value: object, *, model: bool = False) -> str:
    """Any dimension value made into a name ("" when nothing is left): ``/`` becomes ``.``
    (except in a model name), other characters a name cannot hold ``_``, and leading
    punctuation goes: ``/users/{id}`` -> ``users._id_``. Tenants are never rewritten."""
    return "" if value is None else _as_name(str(value), model)


@functools.lru_cache(maxsize=4096)
def _as_name(text: str, model: bool) -> str:
    """Cached: a span's service, environment, model and provider repeat on every span."""
    if (_MODEL_NAME if model else _NAME).fullmatch(text) is not None:
        return text
    if not model:
        text = text.replace(SCOPE_SEPARATOR, ".")
    text = (_NOT_IN_MODEL_NAME if model else _NOT_IN_NAME).sub("_", text)
    return _LEADING.sub("", text)[:128]


def budget_scope(tenant_id: str, feature: str | None) -> str:
    """The key of a budget and of its signals: ``tenant/<t>`` or ``tenant/<t>/feature/<f>``."""
    return f"tenant/{tenant_id}" if feature is None else f"tenant/{tenant_id}/feature/{feature}"


def route_scope(tenant_id: str, route: str) -> str:
    """An alert's scope for a tenant's route (no budget has it): ``tenant/<t>/route/<r>``."""
    return f"tenant/{tenant_id}/route/{route or '-'}"


def parse_scope(scope: str) -> tuple[str, str | None] | None:
    """(tenant, feature) of a budget scope; None for anything else: another kind of scope,
    or parts that are not names (a scope written before names lost ``/``)."""
    parts = scope.split(SCOPE_SEPARATOR)
    if len(parts) == 2 and parts[0] == "tenant" and is_name(parts[1]):
        return parts[1], None
    if len(parts) == 4 and parts[0] == "tenant" and parts[2] == "feature":
        if is_name(parts[1]) and is_name(parts[3]):
            return parts[1], parts[3]
    return None

"""Enriched usage JSON straight to ``usage_events`` column values, without a second
validation: the worker has validated and written every field. Anything this fast path
cannot read (another kind or schema version, a field missing without a default, a value of
the wrong shape) goes through the full model, which names the problem for the DLQ; a value
ClickHouse refuses still reaches the DLQ through the sink's one-by-one retry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic_core import PydanticUndefined

from schemas.common import SCHEMA_VERSIONS
from schemas.messages import EnrichedUsage
from schemas.rows import UsageRow

_MISSING = object()
_PLAIN, _TIME, _TEXT, _LIST = range(4)


def _kind(name: str) -> int:
    if name in ("ts", "processed_at"):
        return _TIME
    if name in ("error", "task_id"):
        return _TEXT  # NULL in the message, '' in the column
    return _LIST if name == "token_budget_violations" else _PLAIN


_PLAN = tuple(
    (name, _MISSING if info.default is PydanticUndefined else info.default, _kind(name))
    for name, info in ((n, EnrichedUsage.model_fields[n]) for n in UsageRow.columns())
)


def usage_values(raw: bytes | None) -> list[Any] | None:
    """The row's values in ``usage_events`` column order, or None: use the full model."""
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    if (type(doc) is not dict or doc.get("kind") != "usage.enriched"
            or doc.get("schema_version", 1) not in SCHEMA_VERSIONS):  # fmt: skip
        return None
    get = doc.get
    out: list[Any] = []
    append = out.append
    try:
        for name, default, kind in _PLAN:
            value = get(name, default)
            if value is _MISSING:
                return None
            if kind == _PLAIN:
                append(value)
            elif kind == _TIME:
                if not value.endswith("Z"):
                    return None  # the worker writes UTC as Z; anything else: the model
                append(datetime.fromisoformat(value))
            elif kind == _TEXT:
                append("" if value is None else value)
            else:
                append(list(value))
    except (TypeError, ValueError, AttributeError):
        return None
    return out

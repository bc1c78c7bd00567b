"""Enriched usage JSON straight to ``usage_events``, parsed by ClickHouse (JSONEachRow)
instead of a second validation in Python: the worker has validated and written every
field. ``usage_line`` checks what ClickHouse would take silently wrong or not at all, and
otherwise hands the record's own bytes on, with its Kafka partition and offset appended:

- another kind or schema version, a field missing without a default, a time that is not
  UTC: None, the full model reads it (and names the problem for the DLQ);
- a field missing that has a default (a version 1 record): written with the default;
- an integer outside its column's type, or not an integer: ClickHouse parses integers
  without an overflow check (2**32 lands in a UInt32 as 0), so such a record never reaches
  it (``OutOfRangeError``).

A value ClickHouse refuses still reaches the DLQ through the sink's one-by-one retry.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from pydantic_core import PydanticUndefined

from tokenledger.contract.common import SCHEMA_VERSIONS
from tokenledger.contract.messages import EnrichedUsage
from tokenledger.contract.rows import SOURCE_COLUMNS, UsageRow

Ranges = dict[str, tuple[int, int, bool]]
"""column -> (lowest, highest, NULL allowed) of each integer column."""

SETTINGS = {
    "input_format_skip_unknown_fields": 1,  # kind, schema_version: not columns
    "input_format_null_as_default": 1,  # error/task_id: NULL in the record, '' stored
    "date_time_input_format": "best_effort",  # ISO 8601 with Z
    "input_format_parallel_parsing": 0,  # a batch is a few MB: one parser is faster
}
_INT = re.compile(r"(Nullable\()?(U?)Int(8|16|32|64)\)?")
_MISSING = object()
_COLUMNS = tuple(UsageRow.columns())
_DEFAULTS = {
    name: info.default
    for name, info in EnrichedUsage.model_fields.items()
    if name in _COLUMNS and info.default is not PydanticUndefined
}
_REQUIRED = frozenset(_COLUMNS) - _DEFAULTS.keys()
_TIMES = ("ts", "processed_at")


class OutOfRangeError(ValueError):
    """An integer its column cannot hold."""


def int_ranges(types: dict[str, str]) -> Ranges:
    """The integer columns of ``types`` (column -> ClickHouse type) with their bounds."""
    out: Ranges = {}
    for name, kind in types.items():
        if (m := _INT.fullmatch(kind)) and name not in SOURCE_COLUMNS:
            bits = int(m[3])
            low, high = (0, 2**bits - 1) if m[2] else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            out[name] = (low, high, m[1] is not None)
    return out


def check_ints(doc: dict[str, Any], ranges: Ranges) -> None:
    for name, (low, high, nullable) in ranges.items():
        value = doc.get(name)
        if value is None and nullable:
            continue
        if type(value) is not int or not low <= value <= high:
            raise OutOfRangeError(
                f"{name}={value!r} does not fit the column (from {low} to {high})"
            )


def usage_line(raw: bytes | None, partition: int, offset: int, ranges: Ranges) -> bytes | None:
    """The JSONEachRow line for ``usage_events``, or None: use the full model. Raises
    ``OutOfRangeError`` for an integer the table cannot hold."""
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    if (
        type(doc) is not dict
        or doc.get("kind") != "usage.enriched"
        or doc.get("schema_version", 1) not in SCHEMA_VERSIONS
        or not _REQUIRED <= doc.keys()
    ):
        return None
    try:
        for name in _TIMES:
            if not doc[name].endswith("Z"):
                return None  # the worker writes UTC as Z; anything else: the model
            datetime.fromisoformat(doc[name])
    except (TypeError, ValueError, AttributeError):
        return None
    complete = _DEFAULTS.keys() <= doc.keys()
    if complete and raw and raw[-1:] == b"}" and not any(s in doc for s in SOURCE_COLUMNS):
        check_ints(doc, ranges)
        return raw[:-1] + b',"kafka_partition":%d,"kafka_offset":%d}' % (partition, offset)
    return row_line(doc if complete else {**_DEFAULTS, **doc}, partition, offset, ranges)


def row_line(row: dict[str, Any], partition: int, offset: int, ranges: Ranges) -> bytes:
    """The JSONEachRow line of a row's fields (e.g. the full model's ``UsageRow``)."""
    check_ints(row, ranges)
    return orjson.dumps(
        {**row, "kafka_partition": partition, "kafka_offset": offset}, option=orjson.OPT_UTC_Z
    )

"""The sink's fast path hands ClickHouse the worker's own bytes (plus the Kafka partition
and offset), fills the defaults of older records, keeps integers ClickHouse would wrap
away from it, and hands anything it cannot read to the model (which names the problem).
That ClickHouse stores exactly the model's row from these lines: tests/integration/
test_sink_rows.py."""

from __future__ import annotations

import json

import orjson
import pytest

from tests.helpers import factories
from tokenledger.contract.messages import EnrichedUsage
from tokenledger.streams.sink.columns import (
    OutOfRangeError,
    check_ints,
    int_ranges,
    row_line,
    usage_line,
)

RANGES = int_ranges(
    {
        "attempt": "UInt16",
        "input_tokens": "UInt32",
        "batch": "Bool",
        "cost_nusd": "Nullable(Int64)",
        "ts": "DateTime64(3, 'UTC')",
        "kafka_offset": "UInt64",
        "tenant_id": "LowCardinality(String)",
    }
)
CASES = [
    factories.enriched(),
    factories.enriched(
        error="TimeoutError: read",
        task_id="t-9",
        cost_nusd=None,
        priced=False,
        token_budget_violations=("retrieved", "tools"),
        cache="exact",
        cache_write_tokens=600,
        cache_write_1h_tokens=400,
        service_tier="flex",
    ),
]


def test_integer_columns_and_their_bounds() -> None:
    assert RANGES == {
        "attempt": (0, 65535, False),
        "input_tokens": (0, 2**32 - 1, False),
        "cost_nusd": (-(2**63), 2**63 - 1, True),
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_tokens", 2**32),
        ("input_tokens", -1),
        ("input_tokens", True),
        ("input_tokens", 3.0),
        ("input_tokens", None),
        ("cost_nusd", 2**63),
        ("attempt", "2"),
    ],
)
def test_an_integer_the_column_cannot_hold_is_refused(field: str, value: object) -> None:
    doc = {"attempt": 1, "input_tokens": 5, "cost_nusd": None, field: value}
    with pytest.raises(OutOfRangeError, match=field):
        check_ints(doc, RANGES)
    raw = json.dumps({**json.loads(CASES[0].model_dump_json()), field: value}).encode()
    with pytest.raises(OutOfRangeError):
        usage_line(raw, 0, 7, RANGES)


def test_the_edges_of_each_range_are_taken() -> None:
    check_ints({"attempt": 65535, "input_tokens": 0, "cost_nusd": -(2**63)}, RANGES)
    check_ints({"attempt": 0, "input_tokens": 2**32 - 1, "cost_nusd": 2**63 - 1}, RANGES)


@pytest.mark.parametrize("event", CASES)
def test_a_worker_record_is_passed_on_as_it_is(event: EnrichedUsage) -> None:
    raw = event.model_dump_json().encode()
    line = usage_line(raw, 2, 41, RANGES)
    assert line is not None and line == raw[:-1] + b',"kafka_partition":2,"kafka_offset":41}'
    assert orjson.loads(line) == {**orjson.loads(raw), "kafka_partition": 2, "kafka_offset": 41}


def test_a_version_1_record_gets_the_version_2_defaults() -> None:
    doc = json.loads(CASES[0].model_dump_json())
    doc["schema_version"] = 1
    del doc["cache_write_1h_tokens"], doc["service_tier"]
    line = usage_line(json.dumps(doc).encode(), 0, 3, RANGES)
    assert line is not None
    assert orjson.loads(line) == {
        **doc,
        "cache_write_1h_tokens": 0,
        "service_tier": "",
        "kafka_partition": 0,
        "kafka_offset": 3,
    }


def test_a_record_carrying_source_columns_gets_the_real_ones() -> None:
    doc = {**json.loads(CASES[0].model_dump_json()), "kafka_partition": 9, "kafka_offset": 9}
    line = usage_line(json.dumps(doc).encode(), 1, 2, RANGES)
    assert line is not None and orjson.loads(line) == {
        **doc,
        "kafka_partition": 1,
        "kafka_offset": 2,
    }


def test_a_row_line_is_checked_too() -> None:
    with pytest.raises(OutOfRangeError, match="input_tokens"):
        row_line({"attempt": 1, "input_tokens": 2**40, "cost_nusd": 1}, 0, 0, RANGES)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{bad",
        b"[]",
        json.dumps({"kind": "usage"}).encode(),
        json.dumps({**json.loads(CASES[0].model_dump_json()), "schema_version": 9}).encode(),
        json.dumps(
            {k: v for k, v in json.loads(CASES[0].model_dump_json()).items() if k != "tenant_id"}
        ).encode(),
        json.dumps({**json.loads(CASES[0].model_dump_json()), "ts": "yesterday"}).encode(),
        json.dumps({**json.loads(CASES[0].model_dump_json()), "ts": "yesterdayZ"}).encode(),
        json.dumps(
            {**json.loads(CASES[0].model_dump_json()), "ts": "2026-11-27T10:00:00+02:00"}
        ).encode(),
    ],
    ids=[
        "empty",
        "malformed",
        "array",
        "other-kind",
        "unknown-version",
        "missing-tenant",
        "bad-time",
        "bad-time-z",
        "not-utc",
    ],
)
def test_what_it_cannot_read_goes_to_the_model(raw: bytes) -> None:
    assert usage_line(raw, 0, 0, RANGES) is None

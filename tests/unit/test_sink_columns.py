"""The sink's fast path from enriched JSON to column values gives exactly the model's row,
and hands anything it cannot read to the model (which names the problem)."""

from __future__ import annotations

import json

import pytest

from schemas.messages import EnrichedUsage
from schemas.rows import UsageRow
from streams.sink.columns import usage_values
from tests.helpers import factories

CASES = [
    factories.enriched(),
    factories.enriched(error="TimeoutError: read", task_id="t-9", cost_nusd=None, priced=False,
                       token_budget_violations=("retrieved", "tools"), cache="exact",
                       cache_write_tokens=600, cache_write_1h_tokens=400, service_tier="flex"),
]  # fmt: skip


@pytest.mark.parametrize("event", CASES)
def test_fast_values_equal_the_models_row(event: EnrichedUsage) -> None:
    assert usage_values(event.model_dump_json().encode()) == UsageRow.from_message(event).values()


def test_a_version_1_record_gets_the_version_2_defaults() -> None:
    doc = json.loads(CASES[0].model_dump_json())
    doc["schema_version"] = 1
    del doc["cache_write_1h_tokens"], doc["service_tier"]
    values = usage_values(json.dumps(doc).encode())
    assert values is not None
    row = dict(zip(UsageRow.columns(), values, strict=True))
    assert (row["cache_write_1h_tokens"], row["service_tier"]) == (0, "")


@pytest.mark.parametrize(
    "raw",
    [b"", b"{bad", b"[]", json.dumps({"kind": "usage"}).encode(),
     json.dumps({**json.loads(CASES[0].model_dump_json()), "schema_version": 9}).encode(),
     json.dumps({k: v for k, v in json.loads(CASES[0].model_dump_json()).items()
                 if k != "tenant_id"}).encode(),
     json.dumps({**json.loads(CASES[0].model_dump_json()), "ts": "yesterday"}).encode(),
     json.dumps({**json.loads(CASES[0].model_dump_json()),
                 "ts": "2026-11-27T10:00:00+02:00"}).encode()],
    ids=["empty", "malformed", "array", "other-kind", "unknown-version", "missing-tenant",
         "bad-time", "not-utc"],
)  # fmt: skip
def test_what_it_cannot_read_goes_to_the_model(raw: bytes) -> None:
    assert usage_values(raw) is None

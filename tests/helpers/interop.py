"""What the OTLP interop tests share: the model calls an instrumented app was told to
make (the oracle's side), the rows the pipeline stored for them (read from ClickHouse after
the sink let go of its path), the edge's skip counters, and the comparison of the two to
the token and the nano-dollar (``genai_prices.calc_price`` per call)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.helpers import factories
from tests.helpers.pricing_oracle import expected_cost
from tests.helpers.provider_standin import Usage

ROWS = """
SELECT service, feature, model, provider, input_tokens, output_tokens, cached_input_tokens,
       cache_write_tokens, reasoning_tokens, cost_nusd, toString(ts)
FROM usage_events FINAL ORDER BY ts, event_id
"""


@dataclass(frozen=True)
class Call:
    """One model call as the app was told to make it, and where it should be attributed."""

    service: str
    feature: str
    model: str
    provider: str
    usage: Usage

    def key(self) -> tuple[Any, ...]:
        u = self.usage
        return (
            self.service,
            self.feature,
            self.model,
            self.provider,
            u.input,
            u.output,
            u.cache_read,
            u.cache_write,
            u.reasoning,
        )


def stored_rows(env: Mapping[str, str]) -> list[list[Any]]:
    """Every usage row, read by a process of its own (the sink must have stopped)."""
    script = (
        "import json, os, sys; from tokenledger.streams.sink.client import get_client;"
        "c = get_client(os.environ['TOKENLEDGER_CLICKHOUSE'], 'tokenledger');"
        "print(json.dumps(c.query(sys.argv[1]).result_rows))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, ROWS],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows: list[list[Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def check_rows(rows: list[list[Any]], calls: list[Call]) -> int:
    """Rows are the calls, one each, with every token class as planned and each row's cost
    the oracle's for its call; the total cost in nano-USD."""
    got = Counter(tuple(r[:9]) for r in rows)
    want = Counter(c.key() for c in calls)
    assert got == want, f"missing: {want - got}; unexpected: {got - want}"
    total = 0
    for row in rows:
        service, feature, model, provider, i, o, r, w, x, cost, ts = row
        event = factories.usage(
            service=service,
            feature=feature,
            model=model,
            provider=provider,
            input_tokens=i,
            output_tokens=o,
            cached_input_tokens=r,
            cache_write_tokens=w,
            reasoning_tokens=x,
            ts=datetime.fromisoformat(ts + "+00:00"),
        )
        assert cost == expected_cost(event), (row, expected_cost(event))
        total += cost
    return total


def skipped(metrics: str) -> dict[str, float]:
    """The edge's skip counters by reason, from its /metrics text."""
    found = re.findall(
        r'^tokenledger_edge_spans_skipped_total\{reason="(\w+)"\} (\S+)$', metrics, re.MULTILINE
    )
    return {reason: float(n) for reason, n in found}


def accepted_spans(metrics: str) -> float:
    found = re.search(
        r'^tokenledger_edge_events_accepted_total\{type="otlp.span"\} (\S+)$', metrics, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0

"""The ClickHouse sink on the real broker and the real engine: exact totals, exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from base64 import b64decode
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import call_control, factories
from tests.helpers.cli import TOKENLEDGER
from tests.helpers.kafka_io import committed_total, produce
from tests.helpers.settings import isolated
from tests.helpers.waiting import wait_for
from tokenledger.contract import topics
from tokenledger.contract.messages import EnrichedUsage
from tokenledger.contract.topics import TopicSpec
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.analytics import queries
from tokenledger.streams.config import Settings
from tokenledger.streams.sink import migrations
from tokenledger.streams.sink.client import get_client
from tokenledger.streams.sink.service import Sink

pytestmark = pytest.mark.integration


def make_topics(settings: Settings) -> None:
    create_topics(
        settings.kafka,
        [TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS],
        3,
        1,
    )


def usage_events(n: int, base: datetime) -> list[EnrichedUsage]:
    """Enriched events as the worker makes them: a cache hit costs 0 and its table cost is
    what it saved; an unknown model has no costs at all."""
    out = []
    for i in range(n):
        table = None if i % 17 == 0 else 1_000_003 * (i % 89) + 7
        hit = i % 11 == 0 and table is not None
        cost = 0 if hit else table
        out.append(
            factories.enriched(
                tenant_id=f"tenant-{i % 5}",
                feature=f"f{i % 3}",
                model=("gpt-4o", "o3")[i % 2],
                route=("rag", "chat")[i % 2],
                ts=base + timedelta(milliseconds=37 * i),
                cost_nusd=cost,
                priced=cost is not None,
                table_cost_nusd=table,
                cost_source="unpriced" if table is None else ("cache" if hit else "table"),
                counterfactual_cost_nusd=2 * (table or 0),
                duplicate_generation=i % 7 == 0,
                list_cost_nusd=None if table is None else (3 * table) // 2,
                unbatched_cost_nusd=None if table is None else (5 * table) // 4,
                context_saved_nusd=(i % 5) * 1000,
                batch=i % 4 == 0,
                cache="exact" if hit else "none",
                task_id=f"task-{i % 40}",
                token_budget_violations=("retrieved",) if i % 13 == 0 else (),
                success=i % 9 != 0,
            )
        )
    return out


def test_every_topic_lands_exactly_and_the_library_agrees(
    kafka_bootstrap: str, clickhouse_dsn: str, ch: Any
) -> None:
    settings = isolated(kafka_bootstrap, 3)
    make_topics(settings)
    database = ch.query("SELECT currentDatabase()").result_rows[0][0]
    migrations.migrate(ch)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    usage = usage_events(600, base)
    outcomes = [
        factories.outcome(
            tenant_id=f"tenant-{t % 5}", task_id=f"task-{t}", success=t % 4 != 0, ts=base
        )
        for t in range(40)
    ]
    burn = factories.signal(
        scope="tenant/tenant-1",
        tenant_id="tenant-1",
        state="warn",
        limit_nusd=900_000_000_000,
        window_start=base - timedelta(minutes=1),
        window_end=base + timedelta(hours=23, minutes=59),
    )
    huge = factories.alert(
        evidence=factories.alert().evidence.model_copy(update={"observed": 2**70})
    )
    # Past the fast path's checks but refused by ClickHouse (a Bool that is not one), and
    # an integer ClickHouse would wrap (never sent to it): both dead-lettered, nothing else.
    not_bool = usage[1].model_dump_json().replace('"success":true', '"success":"maybe"').encode()
    too_big = usage[2].model_dump_json().replace('"output_tokens":', '"output_tokens":4294967296')
    assert b'"maybe"' in not_bool and too_big != usage[2].model_dump_json()
    others = {
        topics.USAGE_ENRICHED: [e.model_dump_json().encode() for e in usage[:300]]
        + [b"{bad"]
        + [not_bool]
        + [e.model_dump_json().encode() for e in usage[300:]]
        + [too_big.encode()],
        topics.REQUESTS: [factories.request(ts=base).model_dump_json().encode() for _ in range(7)],
        topics.OUTCOMES: [o.model_dump_json().encode() for o in outcomes],
        topics.SIGNALS: [
            factories.signal().model_dump_json().encode(),
            burn.model_dump_json().encode(),
            call_control.breaker_signal().model_dump_json().encode(),  # state, not rows
            call_control.retry_signal().model_dump_json().encode(),
        ],
        topics.ALERTS: [
            factories.alert().model_dump_json().encode(),
            huge.model_dump_json().encode(),
        ],
        topics.DLQ: [factories.dlq().model_dump_json().encode()],
    }
    for topic, values in others.items():
        produce(kafka_bootstrap, settings.topic(topic), [(b"k", v) for v in values])

    sink = Sink(
        settings, lambda: get_client(clickhouse_dsn, database), max_rows=100, max_wait_s=0.2
    )
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    counts = {
        "usage_events": 600,
        "request_events": 7,
        "outcome_events": 40,
        "signals": 2,
        "alerts": 1,
        "dlq_events": 5,
    }

    def stored(table: str) -> int:
        return int(ch.command("SELECT count() FROM {t:Identifier}", parameters={"t": table}))

    wait_for(lambda: all(stored(t) == n for t, n in counts.items()), 60, "every row in ClickHouse")
    sink.stop()
    thread.join(30)
    assert sink.counters["signals.call_control"] == 2

    priced = [e.cost_nusd for e in usage if e.cost_nusd is not None]
    raw = ch.query(
        "SELECT sum(cost_nusd), countIf(cost_nusd IS NULL), uniqExact(event_id) FROM usage_events"
    ).result_rows[0]
    assert raw == (sum(priced), len(usage) - len(priced), 600)
    rollup = ch.query(
        "SELECT sum(cost_nusd), sum(events), sum(unpriced_events), "
        "sum(counterfactual_cost_nusd), sum(retry_cost_nusd), sum(cache_saved_nusd) "
        "FROM spend_by_minute"
    ).result_rows[0]
    assert rollup == (
        sum(priced),
        600,
        len(usage) - len(priced),
        sum(e.counterfactual_cost_nusd or 0 for e in usage),
        sum(e.cost_nusd or 0 for e in usage if e.duplicate_generation),
        sum(e.table_cost_nusd or 0 for e in usage if e.cache != "none"),
    )
    rejected = ch.query(
        "SELECT reason, source_topic, key_b64, raw_b64 FROM dlq_events "
        "WHERE component = 'clickhouse-sink'"
    ).result_rows
    # Each with the key and the exact bytes of the message it came from.
    assert sorted((r[0], r[1], b64decode(r[2]), b64decode(r[3])) for r in rejected) == sorted(
        [
            ("invalid_fields", settings.topic(topics.USAGE_ENRICHED), b"k", b"{bad"),
            ("rejected_by_storage", settings.topic(topics.USAGE_ENRICHED), b"k", not_bool),
            ("rejected_by_storage", settings.topic(topics.USAGE_ENRICHED), b"k", too_big.encode()),
            (
                "rejected_by_storage",
                settings.topic(topics.ALERTS),
                b"k",
                huge.model_dump_json().encode(),
            ),
        ]
    )

    def run(name: str, **params: str) -> list[tuple[Any, ...]]:
        query = queries.get(name)
        return queries.run(ch, query, query.bind({"start": "-2d", **params}))[1]

    by_tenant = {r[0]: (r[1], r[2], r[4]) for r in run("cost_by")}
    for t in range(5):
        mine = [e for e in usage if e.tenant_id == f"tenant-{t}"]
        assert by_tenant[f"tenant-{t}"] == (
            len(mine),
            sum(e.cost_nusd or 0 for e in mine),
            sum(e.cost_nusd is None for e in mine),
        )
    (acme_usd,) = [r[3] for r in run("cost_by", tenant="tenant-1")]
    assert (
        str(acme_usd)
        == f"{sum(e.cost_nusd or 0 for e in usage if e.tenant_id == 'tenant-1') / 10**9:.9f}"
    )
    by_model = {r[0]: r[2] for r in run("cost_by", dimension="model")}
    assert by_model == {
        m: sum(e.cost_nusd or 0 for e in usage if e.model == m) for m in ("gpt-4o", "o3")
    }
    top = run("top_spenders", limit="3")
    assert len(top) == 3 and top[0][3] == max(
        sum(e.cost_nusd or 0 for e in usage if (e.tenant_id, e.feature) == key)
        for key in {(e.tenant_id, e.feature) for e in usage}
    )
    unpriced = {(r[0], r[1]): (r[2], r[4], r[5]) for r in run("unpriced_models")}
    expected_unpriced: dict[tuple[str, str], tuple[int, int, int]] = {}
    for e in usage:
        if not e.priced and e.cache == "none":
            n, tin, tout = expected_unpriced.get((e.provider, e.model), (0, 0, 0))
            expected_unpriced[(e.provider, e.model)] = (
                n + 1,
                tin + e.input_tokens,
                tout + e.output_tokens,
            )
    assert unpriced == expected_unpriced and sum(n for n, _, _ in unpriced.values()) == 36
    retries = sum(r[3] for r in run("retry_cost"))
    assert retries == sum(e.cost_nusd or 0 for e in usage if e.duplicate_generation)
    saved = {(r[0], r[1]): r[3] for r in run("cache_savings")}
    assert sum(saved.values()) == sum(e.table_cost_nusd or 0 for e in usage if e.cache == "exact")
    violations = sum(r[3] for r in run("token_budget_violations"))
    assert violations == sum(1 for e in usage if e.token_budget_violations)
    priced_usage = [e for e in usage if e.priced and e.table_cost_nusd is not None]

    def total(f: Callable[[EnrichedUsage], int], keep: Callable[[EnrichedUsage], bool]) -> int:
        return sum(f(e) for e in priced_usage if keep(e))

    def every(e: EnrichedUsage) -> bool:
        return True

    cf = lambda e: (e.counterfactual_cost_nusd or 0) + (e.context_saved_nusd or 0)  # noqa: E731
    hit = lambda e: e.cache != "none"  # noqa: E731
    replay = lambda e: e.cost_source == "replay"  # noqa: E731
    steps = {r[0]: r[1] for r in run("savings_waterfall")}
    assert steps == {
        "baseline": total(cf, lambda e: not e.duplicate_generation),
        "deduplication": total(cf, lambda e: e.duplicate_generation),
        "routing": total(
            lambda e: (e.list_cost_nusd or 0) - (e.counterfactual_cost_nusd or 0), every
        ),
        "cache": total(lambda e: (e.unbatched_cost_nusd or 0) - (e.list_cost_nusd or 0), every)
        - total(lambda e: e.table_cost_nusd or 0, hit),
        "context budget": -total(lambda e: e.context_saved_nusd or 0, every),
        "batch": total(lambda e: (e.table_cost_nusd or 0) - (e.unbatched_cost_nusd or 0), every),
        "prevented retries": -total(lambda e: e.table_cost_nusd or 0, replay),
        "billing adjustments": total(
            lambda e: (e.cost_nusd or 0) - (e.table_cost_nusd or 0),
            lambda e: not hit(e) and not replay(e),
        ),
        "actual": total(lambda e: e.cost_nusd or 0, every),
    }
    assert sum(v for k, v in steps.items() if k != "actual") == steps["actual"]

    routes = {(r[0], r[1]): (r[2], r[3], r[5]) for r in run("route_comparison")}
    for (route, model), (requests, successes, cost) in routes.items():
        mine = [e for e in usage if (e.route, e.model) == (route, model)]
        assert (requests, successes, cost) == (
            len(mine),
            sum(e.success for e in mine),
            sum(e.cost_nusd or 0 for e in mine),
        )

    now = base + timedelta(hours=6)
    burndown = queries.get("budget_burndown")
    (row,) = queries.run(ch, burndown, burndown.bind({"now": now.isoformat()}))[1]
    spend = sum(e.cost_nusd or 0 for e in usage if e.tenant_id == "tenant-1")
    forecast = spend * 24 * 3600 // (6 * 3600 + 60)  # integer nano-USD, as the query
    assert row[:4] == ("tenant-1", "warn", 900_000_000_000, spend)
    assert (row[5], row[6]) == (forecast, forecast >= 900_000_000_000)

    per_task = {(r[0], r[1]): (r[2], r[3], r[4]) for r in run("cost_per_successful_task")}
    ok_tasks = {o.task_id for o in outcomes if o.success}
    for (tenant, feature), (tasks, successes, cost) in per_task.items():
        mine = [
            e
            for e in usage
            if (e.tenant_id, e.feature) == (tenant, feature)
            and e.tenant_id == f"tenant-{int((e.task_id or '-0').split('-')[1]) % 5}"
        ]
        assert tasks == len({e.task_id for e in mine})
        assert successes == len({e.task_id for e in mine if e.task_id in ok_tasks})
        assert cost == sum(e.cost_nusd or 0 for e in mine)


def _sink_env(settings: Settings, data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TOKENLEDGER_KAFKA": settings.kafka,
        "TOKENLEDGER_TOPIC_NAMESPACE": settings.topic_namespace,
        "TOKENLEDGER_PARTITIONS": "3",
        "TOKENLEDGER_CLICKHOUSE": f"chdb://{data}",
    }


def _committed(settings: Settings) -> int:
    """How many enriched usage messages the sink group has committed (all partitions)."""
    return committed_total(
        settings.kafka, settings.topic("tokenledger-sink"), settings.topic(topics.USAGE_ENRICHED), 3
    )


def _stored(env: dict[str, str]) -> tuple[int, int, int, int]:
    """(rows, distinct events, raw cost, rollup cost), read by a separate process: the
    embedded engine's data path belongs to one process at a time."""
    script = (
        "from tokenledger.streams.sink.client import get_client; import os, json;"
        "c = get_client(os.environ['TOKENLEDGER_CLICKHOUSE'], 'tokenledger');"
        "print(json.dumps([c.command('SELECT count() FROM usage_events'),"
        " c.command('SELECT uniqExact(event_id) FROM usage_events'),"
        " c.command('SELECT sum(ifNull(cost_nusd, 0)) FROM usage_events'),"
        " c.command('SELECT sum(cost_nusd) FROM spend_by_minute')]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows, distinct, raw, rollup = (int(x) for x in json.loads(done.stdout.strip().splitlines()[-1]))
    return rows, distinct, raw, rollup


def test_sink_killed_mid_batch_stores_each_event_once(
    kafka_bootstrap: str, tmp_path: Path, spawn: Callable[..., subprocess.Popen[Any]]
) -> None:
    settings = isolated(kafka_bootstrap, 3)
    make_topics(settings)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events = usage_events(12_000, base)
    produce(
        kafka_bootstrap,
        settings.topic(topics.USAGE_ENRICHED),
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
    )
    env = _sink_env(settings, tmp_path / "ch")
    sink = spawn(
        [TOKENLEDGER, "sink", "--max-rows", "300", "--max-wait", "0.1"],
        env=env,
        log=tmp_path / "sink.log",
    )
    wait_for(lambda: _committed(settings) >= 2000, 120, "the sink to commit 2000 messages")
    sink.send_signal(signal.SIGKILL)
    assert sink.wait(10) == -signal.SIGKILL
    assert _committed(settings) < 12_000, "the kill must land mid-stream"
    again = spawn(
        [TOKENLEDGER, "sink", "--max-rows", "300", "--max-wait", "0.1"],
        env=env,
        log=tmp_path / "sink.log",
    )
    wait_for(lambda: _committed(settings) == 12_000, 180, "the restarted sink to finish")
    again.send_signal(signal.SIGTERM)
    assert again.wait(60) == 0
    total = sum(e.cost_nusd or 0 for e in events)
    assert _stored(env) == (12_000, 12_000, total, total)


def test_clickhouse_unavailable_for_a_while_loses_nothing(
    spawn: Callable[..., subprocess.Popen[Any]], kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated(kafka_bootstrap, 3)
    make_topics(settings)
    data = tmp_path / "ch"
    env = _sink_env(settings, data)
    # Another process holds the engine's data path: to the sink, ClickHouse is down.
    holder = spawn(
        [
            sys.executable,
            "-c",
            "import sys; from tokenledger.streams.sink.client import get_client;"
            f"c = get_client('chdb://{data}', 'tokenledger', create=True); print('held', flush=True);"
            "sys.stdin.readline()",
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events = usage_events(3000, base)
    produce(
        kafka_bootstrap,
        settings.topic(topics.USAGE_ENRICHED),
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
    )
    log_path = tmp_path / "sink.log"
    sink = spawn(
        [TOKENLEDGER, "sink", "--max-rows", "500", "--max-wait", "0.2"],
        env=env,
        log=log_path,
    )
    wait_for(
        lambda: log_path.read_text().count("ClickHouse unavailable") >= 2,
        60,
        "the sink to retry against the unavailable engine",
    )
    assert _committed(settings) == 0  # nothing committed while nothing could be stored
    holder.communicate("\n", timeout=30)  # lets go of the data path; closes both pipes
    assert holder.returncode == 0
    wait_for(lambda: _committed(settings) == 3000, 120, "the sink to store everything once back")
    sink.send_signal(signal.SIGTERM)
    assert sink.wait(60) == 0
    total = sum(e.cost_nusd or 0 for e in events)
    assert _stored(env) == (3000, 3000, total, total)

"""Every command the README and docs/ show, run as a user would on a fresh stack of its own:
make up, topics, budgets, migrations, prices, the sink, the query formats, make down."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import factories
from tests.helpers.cli import TOKENLEDGER, tl
from tests.helpers.clock import recent
from tests.helpers.kafka_io import committed_total, produce
from tests.helpers.paths import ROOT
from tests.helpers.waiting import wait_for
from tokenledger.contract import topics
from tokenledger.streams.local.broker import free_port
from tokenledger.streams.sink.migrations import discover

pytestmark = pytest.mark.integration


def make(env: dict[str, str], target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def stack(cli_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`make up` with a home and ports of its own; `make down` whatever the test did."""
    env = {**cli_env, "TOKENLEDGER_PARTITIONS": "2"}
    up = make(env, "up")
    assert up.returncode == 0, up.stderr
    yield env
    down = make(env, "down")
    assert (down.returncode, down.stdout.strip()) == (0, "kafka stopped"), down.stderr


def ok(env: dict[str, str], *args: str) -> str:
    done = tl(env, *args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def test_setup_and_kafka_fetch_are_idempotent(cli_env: dict[str, str]) -> None:
    cache = Path(cli_env["TOKENLEDGER_CACHE"])
    setup = ok(cli_env, "setup")
    assert setup.splitlines() == [
        f"tiktoken ranks: {cache / 'tiktoken'}",
        f"kafka jars: {next(cache.glob('kafka-*/libs'))}",
    ]
    assert ok(cli_env, "setup", "--only", "tiktoken") == setup.splitlines()[0] + "\n"
    assert ok(cli_env, "kafka", "fetch") == setup.splitlines()[1] + "\n"


def test_the_readme_commands_on_a_stack_of_their_own(
    stack: dict[str, str], spawn: Callable[..., subprocess.Popen[Any]], tmp_path: Path
) -> None:
    env = stack
    bootstrap = f"127.0.0.1:{env['TOKENLEDGER_KAFKA_PORT']}"
    listed = ok(env, "topics", "list").splitlines()
    assert [line.split()[0] for line in listed] == [t.name for t in topics.TOPICS]
    assert all(" partitions=2" in line for line in listed)

    ok(
        env,
        "budget",
        "set",
        "--tenant",
        "acme",
        "--limit-usd",
        "50",
        "--tz",
        "Europe/Berlin",
        "--warn",
        "50,80",
    )
    ok(
        env,
        "budget",
        "set",
        "--tenant",
        "acme",
        "--feature",
        "answer",
        "--limit-usd",
        "5",
        "--window",
        "hour",
    )
    assert ok(env, "budget", "list").splitlines() == [
        "tenant/acme: $50.00 per day (Europe/Berlin), warn at 50%, 80%",
        "tenant/acme/feature/answer: $5.00 per hour (UTC), warn at 50%, 80%",
    ]
    assert ok(env, "budget", "rm", "--tenant", "acme", "--feature", "answer") == (
        "removed the budget of tenant/acme/feature/answer\n"
    )
    assert ok(env, "budget", "list").splitlines() == [
        "tenant/acme: $50.00 per day (Europe/Berlin), warn at 50%, 80%"
    ]

    status = ok(env, "migrate", "--status").splitlines()
    assert status == [f"applied  {m.path.name}" for m in discover()]
    assert any(
        line.split()[:2] == ["genai-prices", "openai/gpt-4o"]
        for line in ok(env, "prices", "list").splitlines()
    )
    assert " 0 model entries, 0 discounts, 0 deployments, valid; on genai-prices " in ok(
        env, "prices", "check"
    )

    # Enriched usage through the real sink, then the library in each format.
    base = recent(minutes=30)
    events = [
        factories.enriched(
            tenant_id=t, feature=f, ts=base + timedelta(seconds=i), cost_nusd=1_000_003 * (i + 1)
        )
        for i, (t, f) in enumerate(
            [("acme", "answer"), ("acme", "answer"), ("acme", "search"), ("globex", "answer")]
        )
    ]
    produce(
        bootstrap,
        topics.USAGE_ENRICHED,
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
    )
    sink = spawn([TOKENLEDGER, "sink", "--max-wait", "0.2"], env=env, log=tmp_path / "sink.log")
    wait_for(
        lambda: (
            committed_total(bootstrap, "tokenledger-sink", topics.USAGE_ENRICHED, 2) == len(events)
        ),
        60,
        "the sink to store the events",
    )
    sink.send_signal(signal.SIGTERM)
    assert sink.wait(60) == 0

    args = ["query", "cost_by_feature", "--param", "start=-1d", "--param", "tenant=acme"]
    rows = list(csv.reader(io.StringIO(ok(env, *args, "--format", "csv"))))
    assert rows == [
        ["tenant_id", "feature", "events", "cost_nusd", "cost_usd", "unpriced_events"],
        ["acme", "answer", "2", "3000009", "0.003000009", "0"],
        ["acme", "search", "1", "3000009", "0.003000009", "0"],
    ]
    as_json = json.loads(ok(env, *args, "--format", "json"))
    assert [(r["feature"], r["cost_nusd"], r["cost_usd"]) for r in as_json] == [
        ("answer", 3000009, "0.003000009"),
        ("search", 3000009, "0.003000009"),
    ]
    table = ok(env, *args).splitlines()
    assert table[0].split() == rows[0] and table[-1] == "(2 rows)"
    assert [line.split()[:4] for line in table[1:-1]] == [r[:4] for r in rows[1:]]
    names = [line.split()[0] for line in ok(env, "query", "--list").splitlines()]
    assert names == sorted(p.stem for p in (ROOT / "clickhouse" / "queries").glob("*.sql"))
    assert os.path.isdir(Path(env["TOKENLEDGER_HOME"]) / "clickhouse")


def test_no_output_or_log_carries_the_clickhouse_password(
    cli_env: dict[str, str], kafka_bootstrap: str, spawn: Callable[..., subprocess.Popen[Any]]
) -> None:
    """Every command that names the ClickHouse DSN (`migrate`, `up`, `access`, `report`,
    `query`, the demo) and the sink's retry log, against a server that refuses the
    connection: each says where it failed with the password as ***, and no line, file or
    log under the home holds the password in any form."""
    password = "pw-S3cr3t@tl"  # noqa: S105 - its @ is %40 in the DSN: both forms are looked for
    port = free_port()
    dsn = f"http://tl:{quote(password, safe='')}@127.0.0.1:{port}"
    env = {
        **cli_env,
        "TOKENLEDGER_CLICKHOUSE": dsn,
        "TOKENLEDGER_KAFKA": kafka_bootstrap,
        "TOKENLEDGER_TOPIC_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "TOKENLEDGER_PARTITIONS": "1",
    }
    refused = (
        f"tokenledger: ClickHouse at http://tl:***@127.0.0.1:{port} is unavailable: "
        "connection refused; check TOKENLEDGER_CLICKHOUSE and that the server is up"
    )
    said = []
    for args in (
        ["up"],
        ["migrate"],
        ["access", "platform"],
        ["report"],
        ["query", "cost_by"],
        ["demo", "--requests-per-day", "100", "--seconds", "1"],
    ):
        done = tl(env, *args)
        assert (done.returncode, done.stderr.splitlines()[-1]) == (3, refused), args
        said.append(done.stdout + done.stderr)
    assert (
        f"fresh ClickHouse database tokenledger_demo at http://tl:***@127.0.0.1:{port}" in said[-1]
    )

    log_path = Path(env["TOKENLEDGER_HOME"]) / "sink.log"
    with log_path.open("wb") as log:  # `up` made the topics: the sink is assigned them
        sink = spawn([TOKENLEDGER, "sink"], env=env, stdout=log, stderr=log)
        wait_for(
            lambda: log_path.read_text().count("ClickHouse unavailable") >= 2,
            60,
            "the sink to retry ClickHouse twice",
        )
        sink.kill()  # it retries until ClickHouse answers, SIGTERM or not
        sink.wait(30)
    retries = [
        line for line in log_path.read_text().splitlines() if "ClickHouse unavailable" in line
    ]
    assert all(f"ClickHouse at http://tl:***@127.0.0.1:{port} is unavailable" in r for r in retries)

    files = [
        p.read_text(errors="replace")
        for p in Path(env["TOKENLEDGER_HOME"]).rglob("*")
        if p.is_file() and p.stat().st_size < 10_000_000
    ]
    for form in {password, quote(password, safe=""), quote(password)}:
        for text in [*said, *files]:
            assert form not in text

"""`tokenledger demo` end to end (short), and its report in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import tl
from tests.helpers.pricing_oracle import expected_cost
from tokenledger.contract.common import format_usd
from tokenledger.contract.messages import UsageEvent
from tokenledger.streams.demo.plan import ANOMALY_TENANT, OVER_BUDGET_TENANT

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def on_call() -> Iterator[tuple[str, list[str]]]:
    """The user's own on-call receivers (a webhook, Slack, PagerDuty, Alertmanager), all
    on one HTTP server on 127.0.0.1: its URL and every path anything sent it."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            requests.append(self.path)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def demo_run(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, on_call: tuple[str, list[str]]
) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("demo")
    receivers = {
        "TOKENLEDGER_NOTIFY_WEBHOOK_URL": f"{on_call[0]}/hook",
        "TOKENLEDGER_NOTIFY_SLACK_URL": f"{on_call[0]}/services/T0/B0/X",
        "TOKENLEDGER_NOTIFY_PAGERDUTY_KEY": "R0UTINGKEY",
        "TOKENLEDGER_NOTIFY_PAGERDUTY_URL": f"{on_call[0]}/v2/enqueue",
        "TOKENLEDGER_NOTIFY_ALERTMANAGER_URL": f"{on_call[0]}/am",
    }
    env = {
        **os.environ,
        "TOKENLEDGER_KAFKA": kafka_bootstrap,
        "TOKENLEDGER_HOME": str(home),
        "TOKENLEDGER_CLICKHOUSE": f"chdb://{home / 'clickhouse'}",
        "TOKENLEDGER_PARTITIONS": "3",
        **receivers,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.demo_run", "8000", "25"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout)
    out["progress"] = [line for line in done.stderr.splitlines() if " sim | emitted " in line]
    out["home"] = home
    # After the demo, as a user would: `tokenledger report`, nothing set but the home (and
    # the broker). It writes $TOKENLEDGER_HOME/report.html too: the demo's page moves aside.
    page = Path(out["report"])
    out["report"] = str(page.replace(home / "demo-report.html"))
    bare = {k: v for k, v in env.items() if not k.startswith("TOKENLEDGER_")}
    bare["TOKENLEDGER_HOME"] = str(home)
    out["bare_report"] = tl(bare, "report")
    out["bare_report_page"] = page.read_text() if page.exists() else ""
    return out


def test_the_summary_equals_clickhouse_and_the_traffic_to_the_nano_dollar(
    demo_run: dict[str, Any],
) -> None:
    emitted = [UsageEvent.model_validate_json(json.dumps(e)) for e in demo_run["emitted"]]
    assert len(emitted) > 8000
    expected: dict[str, int] = defaultdict(int)
    for e in emitted:
        expected[e.tenant_id] += 0 if e.cache != "none" else expected_cost(e)
    raw = {t: (cost, n) for t, cost, n in demo_run["raw"]["cost_by_tenant"]}
    assert {t: c for t, (c, _) in raw.items()} == dict(expected)
    assert {t: n for t, (_, n) in raw.items()} == dict(Counter(e.tenant_id for e in emitted))
    summary = {r["value"]: int(r["cost_nusd"]) for r in demo_run["report_tables"]["cost_by_tenant"]}
    assert summary == dict(expected)
    by_feature: dict[str, int] = defaultdict(int)
    for r in demo_run["report_tables"]["cost_by_feature"]:
        by_feature[r["tenant_id"]] += int(r["cost_nusd"])
    assert dict(by_feature) == dict(expected)
    retries = [e for e in emitted if e.attempt > 1]
    retry_cost = sum(expected_cost(e) for e in retries)
    assert demo_run["raw"]["retry"] == [[retry_cost, len(retries)]]
    assert (
        sum(int(r["retry_cost_nusd"]) for r in demo_run["report_tables"]["retry_cost"])
        == retry_cost
    )
    hits = [e for e in emitted if e.cache != "none"]
    assert demo_run["raw"]["cache"] == [[sum(map(expected_cost, hits)), len(hits)]]
    waterfall = {
        r["step"]: int(r["amount_nusd"]) for r in demo_run["report_tables"]["savings_waterfall"]
    }
    assert waterfall["actual"] == sum(expected.values())
    assert sum(v for k, v in waterfall.items() if k != "actual") == waterfall["actual"]
    text = demo_run["summary"]
    total = sum(expected.values())
    assert f"${total / 10**9:,.2f}" in text.splitlines()[0]
    for tenant in expected:
        assert tenant in text


def test_progress_counts_usage_events_and_ends_with_all_of_them_stored(
    demo_run: dict[str, Any],
) -> None:
    """Not a terminal here, so plain lines; "stored" counts enriched usage events the sink
    committed (never offsets: those also count transaction markers)."""
    assert len(demo_run["progress"]) >= 3
    figures = [
        {
            k.strip(): int(v.replace(",", ""))
            for k, v in (part.rsplit(" ", 1) for part in line.split(" | ")[1:])
        }
        for line in demo_run["progress"]
    ]
    for f in figures:
        assert f["stored"] <= f["processed"] <= f["emitted"], f
    last = figures[-1]
    assert last["emitted"] == last["processed"] == last["stored"] == len(demo_run["emitted"])


def test_the_report_speaks_money_and_one_clock(demo_run: dict[str, Any]) -> None:
    page = Path(demo_run["report"]).read_text()
    text = demo_run["summary"]
    for shown in (page, text):
        assert "None" not in shown and "nusd" not in shown
        assert not re.search(r"(?<![\d.,])\d{7,}(?![\d.,])", shown), "a raw nano-USD figure"
    assert "<th>Cost</th>" in page and "<th>Issued</th>" in page
    # Signal issue times are on the simulated day's clock, like everything else.
    start, end = (datetime.fromisoformat(demo_run[k]) for k in ("start", "end"))
    issued = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d \d\d:\d\d)</td><td>tenant/", page)
    assert issued, "no budget signal in the report"
    for at in issued:
        assert (
            start <= datetime.fromisoformat(at).replace(tzinfo=UTC) <= end + timedelta(minutes=15)
        ), at


def test_the_over_budget_tenant_is_blocked_at_its_gateway_and_the_anomaly_is_paged(
    demo_run: dict[str, Any],
) -> None:
    assert demo_run["blocked"].get(OVER_BUDGET_TENANT, 0) > 0
    assert set(demo_run["blocked"]) == {OVER_BUDGET_TENANT}
    states = [
        s for scope, s in demo_run["raw"]["signals"] if scope == f"tenant/{OVER_BUDGET_TENANT}"
    ]
    assert states[-1] == "block" and "warn" in states
    emitted = [e for e in demo_run["emitted"] if e["tenant_id"] == OVER_BUDGET_TENANT]
    budget = next(b for b in demo_run["budgets"] if b["tenant_id"] == OVER_BUDGET_TENANT)
    assert (
        sum(
            expected_cost(UsageEvent.model_validate_json(json.dumps(e)))
            for e in emitted
            if e["cache"] == "none"
        )
        >= budget["limit_nusd"]
    )
    paged = [(a["detector"], a["tenant_id"], a["status"]) for a in demo_run["alerts"]]
    assert ("spend_rate", ANOMALY_TENANT, "firing") in paged
    stored = [tuple(a) for a in demo_run["raw"]["alerts"]]
    assert Counter(stored) == Counter(paged)  # the receiver got exactly what ClickHouse holds


def test_the_report_renders_its_charts_with_data_in_headless_chromium(
    demo_run: dict[str, Any], tmp_path: Path
) -> None:
    from PIL import Image

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make setup` installs it"
    page = Path(demo_run["report"]).as_uri()
    flags = [
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--window-size=900,1400",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = dom.stdout.count('class="chart"')
    assert charts >= 6  # waterfall, four dimensions over time, a burn-down
    assert f'data-charts="{charts}"' in dom.stdout  # the page's script ran: every chart has data
    assert "Uncaught" not in dom.stderr and 'data-block="1"' in dom.stdout
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (900, 1400)
    colors = Counter(image.get_flattened_data())
    assert colors[(0x4E, 0x79, 0xA7)] > 5000  # the baseline bar and the series
    assert colors[(0x59, 0xA1, 0x4F)] > 1000  # the actual bar
    assert len(colors) > 50  # text, axes, bars: not a blank page


def test_the_demo_pages_only_its_own_file_and_leaves_no_topic_behind(
    demo_run: dict[str, Any], on_call: tuple[str, list[str]], kafka_bootstrap: str
) -> None:
    """The user's receivers were configured (every kind): the runaway was paged to the
    demo's file and to none of them. The demo's namespace is gone from the broker."""
    from tokenledger.streams.admin.topics import admin_client

    assert ("spend_rate", ANOMALY_TENANT, "firing") in [
        (a["detector"], a["tenant_id"], a["status"]) for a in demo_run["alerts"]
    ]
    assert on_call[1] == []
    admin = admin_client(kafka_bootstrap)
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith("demo")]
    groups = admin.list_consumer_groups().result(timeout=30).valid
    assert (topics, [g.group_id for g in groups if g.group_id.startswith("demo")]) == ([], [])


def test_a_bare_report_after_the_demo_shows_the_demos_day(demo_run: dict[str, Any]) -> None:
    """README: `tokenledger report [--start=-7d]`; the demo wrote `tokenledger_demo`, and
    the default database does not exist, so the report reads the demo's and says so."""
    emitted = [UsageEvent.model_validate_json(json.dumps(e)) for e in demo_run["emitted"]]
    total = sum(expected_cost(e) for e in emitted if e.cache == "none")
    done = demo_run["bare_report"]
    assert (done.returncode, done.stderr) == (
        0,
        (
            "reading tokenledger_demo, the database `tokenledger demo` wrote (tokenledger does not "
            "exist; TOKENLEDGER_CLICKHOUSE_DATABASE chooses another)\n"
        ),
    )
    first = done.stdout.splitlines()[0]
    assert first.endswith(f" UTC: {format_usd(total)} exactly {format_usd(total, exact=True)}")
    start = datetime.strptime(first.split()[1] + " " + first.split()[2], "%Y-%m-%d %H:%M")
    assert datetime.now(UTC).replace(tzinfo=None) - start > timedelta(days=6, hours=23)  # -7d
    assert done.stdout.splitlines()[-1] == f"Report: {demo_run['home'] / 'report.html'}"
    assert "<th>Cost</th>" in demo_run["bare_report_page"]

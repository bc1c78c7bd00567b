"""Budget checks for any gateway: `/v1/check` decides as a BudgetGuard does, and a real
nginx with `auth_request` (the snippet docs/edge.md shows) lets a tenant under budget through and
refuses a blocked one with 429 and the reason, soon after the worker's block signal."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Producer

from tests.helpers import factories
from tests.helpers.clock import midday_zone
from tests.helpers.edge import served, with_topics
from tests.helpers.kafka_io import assigned_reader
from tests.helpers.nginx import gateway, snippet_from_docs
from tests.helpers.paths import ROOT
from tests.helpers.settings import isolated
from tests.helpers.signing_keys import forgeries, key_file
from tests.helpers.waiting import wait_value
from tests.helpers.workers import run_worker
from tokenledger.contract import topics
from tokenledger.streams.admin import budgets as budget_admin
from tokenledger.streams.config import Settings

pytestmark = pytest.mark.integration
FIGURES: dict[str, float] = {}


def through(url: str, tenant: str | None, **headers: str) -> tuple[int, str, str]:
    """A request through the gateway as ``tenant`` (with ``headers``): status, body, reason
    header."""
    sent = {**({"X-Tokenledger-Tenant": tenant} if tenant is not None else {}), **headers}
    request = urllib.request.Request(url + "/chat", headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode(), r.headers.get("x-tokenledger-reason", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("x-tokenledger-reason", "")


def test_check_answers_as_the_guard_does(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated(kafka_bootstrap, 1)
    worker = key_file(tmp_path, "worker")
    env = {**with_topics(settings, tmp_path), "TOKENLEDGER_PUBLIC_KEYS": worker.public}
    topic = settings.topic(topics.SIGNALS)
    issued = datetime.now(UTC).replace(microsecond=0)
    ms = int(issued.timestamp() * 1000)
    signed = factories.signal(
        tenant_id="acme",
        scope="tenant/acme",
        state="warn",
        spend_nusd=9 * 10**9,
        limit_nusd=10 * 10**9,
        threshold_pct=80,
        reason="80% of the daily budget",
        issued_at=issued,
    )
    producer = Producer({"bootstrap.servers": settings.kafka})
    body = signed.model_dump_json().encode()
    producer.produce(
        topic, body, b"tenant/acme", headers=worker.signer.headers(topic, b"tenant/acme", body, ms)
    )
    forged = (
        factories.signal(
            tenant_id="mallory", scope="tenant/mallory", state="block", issued_at=issued
        )
        .model_dump_json()
        .encode()
    )
    for headers in forgeries(topic, b"tenant/mallory", forged, ms):
        producer.produce(topic, forged, b"tenant/mallory", headers=headers)
    assert producer.flush(30) == 0
    with served(
        env, tmp_path, "--tenant-header", "X-Customer-Id", grants={"acme-only": ["acme"]}
    ) as edge:
        # the same rules as a guard, with public keys only: a forged block does not count
        # (unsigned, another key's, the old shared HMAC key's)
        assert edge.call("GET", "/v1/check?tenant=mallory").json()["state"] == "allow"
        warn = edge.call("GET", "/v1/check?tenant=acme&feature=search").json()
        assert (warn["allowed"], warn["state"], warn["scope"]) == (True, "warn", "tenant/acme")
        over = edge.call("GET", "/v1/check?tenant=acme&est_cost_usd=1.000000001").json()
        assert (over["allowed"], over["state"]) == (False, "block")
        assert "would exceed the budget ($10.00 of $10.00)" in over["reason"]
        fits = edge.call("GET", "/v1/check?tenant=acme&est_cost_usd=1").json()
        assert fits["allowed"] is True
        assert edge.call("GET", "/v1/check?tenant=globex").json()["state"] == "allow"
        bad = edge.call("GET", "/v1/check?tenant=acme&est_cost_usd=lots")
        assert (bad.status, bad.json()["error"].startswith("est_cost_usd 'lots'")) == (400, True)
        assert edge.call("GET", "/v1/check").status == 400
        other = edge.call("GET", "/v1/check?tenant=globex", key=edge.keys["acme-only"])
        assert (other.status, "may not ask about tenant 'globex'" in other.json()["error"]) == (
            403,
            True,
        )
        envoy = edge.call(
            "GET", "/v1/authz", headers={"X-Customer-Id": "acme", "x-tokenledger-est-cost-usd": "2"}
        )
        assert (envoy.status, envoy.headers["x-tokenledger-state"]) == (429, "block")
        assert envoy.headers["x-tokenledger-reason"].startswith("estimated cost would exceed")
        unnamed = edge.call("GET", "/v1/authz", headers={"x-tokenledger-tenant": "acme"})
        assert (unnamed.status, unnamed.json()["error"]) == (
            400,
            "the x-customer-id header is required (the tenant to check)",
        )


def test_nginx_refuses_a_blocked_tenant_soon_after_the_block_signal(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings: Settings = isolated(kafka_bootstrap, 1)
    env = with_topics(settings, tmp_path)
    budget_admin.put(
        settings, budget_admin.make_budget("acme", None, "0.10", "day", midday_zone(), "50,80")
    )
    with (
        run_worker(settings, "edge-w1", heartbeat=timedelta(hours=1)),
        served(env, tmp_path) as edge,
        gateway(
            tmp_path,
            snippet_from_docs(ROOT / "docs" / "edge.md")
            .replace("127.0.0.1:8787", edge.url.removeprefix("http://"))
            .replace("TOKENLEDGER_GATEWAY_KEY", edge.key),
        ) as nginx,
    ):
        assert through(nginx, "acme")[:2] == (200, "upstream ok\n")
        assert through(nginx, "globex")[:2] == (200, "upstream ok\n")
        now = datetime.now(UTC) - timedelta(seconds=5)
        spend = [
            JSONFormat().write(
                CloudEvent(
                    {"type": "dev.tokenledger.usage.v1", "source": "tests", "id": f"u{i}"},
                    json.loads(factories.usage(tenant_id="acme", ts=now).model_dump_json()),
                )
            )
            for i in range(12)
        ]
        sent = edge.call(
            "POST",
            "/v1/events",
            b"[" + b",".join(spend) + b"]",
            {"Content-Type": "application/cloudevents-batch+json"},
        )
        assert sent.json() == {"accepted": 12, "rejected": []}
        status, body, reason = wait_value(
            lambda: through(nginx, "acme"), lambda a: a[0] != 200, "nginx to refuse acme"
        )
        refused_at = time.time()
        assert status == 429 and reason.startswith("budget exhausted"), (status, body, reason)
        assert body == f"refused: {reason}\n"
        assert through(nginx, "globex")[:2] == (200, "upstream ok\n")
    block_ms = _block_signal_ms(settings)
    FIGURES["block_to_refusal_s"] = refused_at - block_ms / 1000
    print(f"\nnginx refused acme {FIGURES['block_to_refusal_s']:.3f}s after the block signal")


SEPARATOR = "'/' is the scope separator and cannot be part of a name (use - or . instead)"


def test_nginx_turns_every_refusal_into_429_with_the_reason(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated(kafka_bootstrap, 1)
    env = with_topics(settings, tmp_path)
    with (
        served(env, tmp_path) as edge,
        gateway(
            tmp_path,
            snippet_from_docs(ROOT / "docs" / "edge.md")
            .replace("127.0.0.1:8787", edge.url.removeprefix("http://"))
            .replace("TOKENLEDGER_GATEWAY_KEY", edge.key),
        ) as nginx,
    ):
        assert through(nginx, "acme")[:2] == (200, "upstream ok\n")
        for tenant, headers, why in (
            (None, {}, "the x-tokenledger-tenant header is required (the tenant to check)"),
            ("team/a", {}, f"tenant 'team/a': {SEPARATOR}"),
            (
                "acme",
                {"X-Tokenledger-Est-Cost-Usd": "lots"},
                "x-tokenledger-est-cost-usd 'lots' is not a number of dollars, e.g. 0.0125",
            ),
        ):
            assert through(nginx, tenant, **headers) == (429, f"refused: {why}\n", why)


def _block_signal_ms(settings: Settings) -> int:
    """When the worker published acme's block signal (the record's timestamp)."""
    reader = assigned_reader(settings.kafka, settings.topic(topics.SIGNALS))
    try:
        for _ in range(50):
            for m in reader.consume(100, 0.2):
                value = m.value() if m.error() is None else None
                if value and json.loads(value)["state"] == "block":
                    return int(m.timestamp()[1])
    finally:
        reader.close()
    raise AssertionError("no block signal on the signals topic")

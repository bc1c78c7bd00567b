"""`tokenledger notify` on the real broker, delivering to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.helpers.kafka_io import committed_total, produce, read_committed
from tests.helpers.settings import isolated
from tests.helpers.waiting import wait_for
from tokenledger.contract import topics
from tokenledger.contract.messages import Alert, DlqRecord
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.alerts.notifier import Notifier
from tokenledger.streams.alerts.receivers import Receiver, receivers_from_env
from tokenledger.streams.config import Settings

pytestmark = pytest.mark.integration


@dataclass
class Catcher:
    """An HTTP server that records every POST and answers from a script per path."""

    script: dict[str, list[int]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    def posts(self, path: str) -> list[Any]:
        return [body for p, _, body in self.calls if p == path]


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    state = Catcher()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.calls.append((self.path, dict(self.headers), json.loads(body)))
                answers = state.script.get(self.path, [])
                status = answers.pop(0) if answers else 202
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    s = isolated(kafka_bootstrap, 1)
    names = [s.topic(topics.ALERTS), s.topic(topics.DLQ)]
    create_topics(s.kafka, [topics.TopicSpec(n) for n in names], 1, 1)
    return s


def _alert(status: str, fp: str = "0123456789abcdef0123456789abcdef") -> Alert:
    start = datetime(2026, 11, 25, 10, 31, tzinfo=UTC)
    return Alert.model_validate(
        {
            "fingerprint": fp,
            "detector": "spend_rate",
            "severity": "critical",
            "status": status,
            "scope": "tenant/acme/feature/agent",
            "tenant_id": "acme",
            "feature": "agent",
            "summary": "tenant/acme/feature/agent spent $4.20 in the 2 minutes to 10:33 UTC",
            "evidence": {
                "observed": 4_200_000_000,
                "expected": 100_000_000,
                "unit": "nusd/2min",
                "window_start": start,
                "window_end": start + timedelta(minutes=2),
            },
            "starts_at": start,
            "ends_at": start + timedelta(minutes=20) if status == "resolved" else None,
            "issued_at": start + timedelta(minutes=2, seconds=1),
        }
    )


def test_every_receiver_gets_its_exact_payload_and_500s_are_retried(
    settings: Settings, catcher: Catcher
) -> None:
    env = {
        "TOKENLEDGER_NOTIFY_WEBHOOK_URL": f"{catcher.url}/hook",
        "TOKENLEDGER_NOTIFY_WEBHOOK_TOKEN": "s3cret-token",
        "TOKENLEDGER_NOTIFY_SLACK_URL": f"{catcher.url}/services/T000/B000/XXXX",
        "TOKENLEDGER_NOTIFY_PAGERDUTY_KEY": "R0UTINGKEY",
        "TOKENLEDGER_NOTIFY_PAGERDUTY_URL": f"{catcher.url}/v2/enqueue",
        "TOKENLEDGER_NOTIFY_ALERTMANAGER_URL": f"{catcher.url}/am/",
    }
    catcher.script["/v2/enqueue"] = [500, 503]  # PagerDuty fails twice, then takes it
    firing, resolved = _alert("firing"), _alert("resolved")
    produce(
        settings.kafka,
        settings.topic(topics.ALERTS),
        [(a.fingerprint.encode(), a.model_dump_json().encode()) for a in (firing, resolved)],
    )
    notifier = Notifier(settings, receivers_from_env(env), retries=3, backoff_s=0.05, resend_s=600)
    notifier.run(idle_stop_s=3)

    text = {"observed": "$4.20 per 2 min", "expected": "$0.1000 per 2 min"}
    assert catcher.posts("/hook") == [
        {**json.loads(firing.model_dump_json()), "evidence_text": text},
        {**json.loads(resolved.model_dump_json()), "evidence_text": text},
    ]
    hook_headers = [h for p, h, _ in catcher.calls if p == "/hook"]
    assert all(h["Authorization"] == "Bearer s3cret-token" for h in hook_headers)
    slack = catcher.posts("/services/T000/B000/XXXX")
    assert slack[0]["text"] == (
        ":rotating_light: [FIRING] spend_rate on tenant/acme/feature/agent: "
        "tenant/acme/feature/agent spent $4.20 in the 2 minutes to 10:33 UTC"
    )
    assert slack[0]["blocks"][1]["elements"][0]["text"] == (
        "observed $4.20 per 2 min vs expected $0.1000 per 2 min, window 2026-11-25T10:31:00Z "
        "to 2026-11-25T10:33:00Z; fingerprint `0123456789abcdef0123456789abcdef`"
    )
    assert slack[1]["text"].startswith(":white_check_mark: [RESOLVED] spend_rate on ")
    pd = catcher.posts("/v2/enqueue")
    assert len(pd) == 4  # 500, 503, then the trigger; the resolve at once
    assert (
        pd[0]
        == pd[1]
        == pd[2]
        == {
            "routing_key": "R0UTINGKEY",
            "event_action": "trigger",
            "dedup_key": "0123456789abcdef0123456789abcdef",
            "payload": {
                "summary": firing.summary,
                "source": "tokenledger",
                "severity": "critical",
                "timestamp": "2026-11-25T10:31:00Z",
                "component": "tenant/acme/feature/agent",
                "group": "acme",
                "class": "spend_rate",
                "custom_details": {
                    "observed": 4_200_000_000,
                    "expected": 100_000_000,
                    "unit": "nusd/2min",
                    "observed_text": "$4.20 per 2 min",
                    "expected_text": "$0.1000 per 2 min",
                    "window_start": "2026-11-25T10:31:00Z",
                    "window_end": "2026-11-25T10:33:00Z",
                    "tenant_id": "acme",
                    "feature": "agent",
                },
            },
        }
    )
    assert pd[3] == {
        "routing_key": "R0UTINGKEY",
        "event_action": "resolve",
        "dedup_key": "0123456789abcdef0123456789abcdef",
    }
    am = catcher.posts("/am/api/v2/alerts")
    held = datetime.fromisoformat(am[0][0].pop("endsAt"))  # 4 re-send intervals ahead
    assert timedelta(minutes=39) < held - datetime.now(UTC) <= timedelta(minutes=40)
    assert am[0] == [
        {
            "labels": {
                "alertname": "tokenledger_spend_rate",
                "detector": "spend_rate",
                "severity": "critical",
                "tenant_id": "acme",
                "scope": "tenant/acme/feature/agent",
                "fingerprint": "0123456789abcdef0123456789abcdef",
                "feature": "agent",
            },
            "annotations": {
                "summary": firing.summary,
                "observed": "$4.20 per 2 min",
                "expected": "$0.1000 per 2 min",
                "observed_value": "4200000000",
                "expected_value": "100000000",
                "unit": "nusd/2min",
                "window_start": "2026-11-25T10:31:00Z",
                "window_end": "2026-11-25T10:33:00Z",
            },
            "startsAt": "2026-11-25T10:31:00Z",
        }
    ]
    assert am[1][0]["endsAt"] == "2026-11-25T10:51:00Z"
    assert notifier.counters == {
        "delivered.webhook": 2,
        "delivered.slack": 2,
        "delivered.pagerduty": 2,
        "delivered.alertmanager": 2,
    }
    group = settings.topic("tokenledger-notifier")
    assert committed_total(settings.kafka, group, settings.topic(topics.ALERTS), 1) == 2


def test_after_the_retry_limit_the_alert_goes_to_the_dlq_with_the_error_and_no_secret(
    settings: Settings, catcher: Catcher, caplog: pytest.LogCaptureFixture
) -> None:
    slack_path = "/services/T999/B999/very-secret"
    catcher.script[slack_path] = [500] * 10
    catcher.script["/hook"] = [400]  # a refusal is not retried
    receivers = [
        Receiver("slack", "slack", catcher.url + slack_path),
        Receiver("webhook", "webhook", catcher.url + "/hook"),
    ]
    alert = _alert("firing")
    raw = alert.model_dump_json().encode()
    produce(settings.kafka, settings.topic(topics.ALERTS), [(b"k", raw), (b"k", b"{oops")])
    caplog.set_level("INFO")
    notifier = Notifier(settings, receivers, retries=4, backoff_s=0.01)
    notifier.run(idle_stop_s=3)

    assert len(catcher.posts(slack_path)) == 4 and len(catcher.posts("/hook")) == 1
    dlq = [
        DlqRecord.model_validate_json(m.value())
        for m in read_committed(settings.kafka, settings.topic(topics.DLQ), 3)
    ]
    assert [(d.reason, d.detail) for d in dlq] == [
        ("delivery_failed", "receiver slack: HTTP 500 after 4 attempts"),
        ("delivery_failed", "receiver webhook: HTTP 400 (not retried)"),
        ("malformed_json", dlq[2].detail),
    ]
    assert dlq[0].raw_b64 and dlq[0].offset == 0 and dlq[2].offset == 1
    assert notifier.counters == {"failed.slack": 1, "failed.webhook": 1, "dlq.malformed_json": 1}
    assert "very-secret" not in caplog.text and catcher.url not in caplog.text
    group = settings.topic("tokenledger-notifier")
    assert committed_total(settings.kafka, group, settings.topic(topics.ALERTS), 1) == 2


@pytest.fixture
def broken_http() -> Iterator[dict[str, str]]:
    """Servers on 127.0.0.1 that answer a POST with something that is not HTTP, or with a
    200 whose body breaks off: base URLs by name."""
    replies = {
        "not_http": b"HELLO\r\n\r\n",
        "breaks_off": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
    }
    servers, threads = [], []
    for reply in replies.values():

        class Handler(socketserver.StreamRequestHandler):
            answer = reply

            def handle(self) -> None:
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.rfile.read(length)
                self.wfile.write(self.answer)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threads.append(threading.Thread(target=server.serve_forever, daemon=True))
        threads[-1].start()
    yield {
        name: f"http://127.0.0.1:{s.server_address[1]}"
        for name, s in zip(replies, servers, strict=True)
    }
    for server, thread in zip(servers, threads, strict=True):
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_reply_that_is_not_http_breaks_off_or_a_bad_url_fails_the_delivery_not_the_notifier(
    settings: Settings, broken_http: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """BadStatusLine, IncompleteRead and InvalidURL are no OSError: each used to end the
    notifier with a traceback quoting the URL (a webhook's secret path). Now each is a failed
    attempt, retried, then dead-lettered with the error and no URL; the alert is committed."""
    receivers = [
        Receiver("webhook", "webhook", broken_http["not_http"] + "/hooks/s3cret-path-1"),
        Receiver("slack", "slack", broken_http["breaks_off"] + "/services/T1/B1/s3cret-path-2"),
        Receiver("alertmanager", "alertmanager", broken_http["not_http"] + "/s3cret path-3"),
    ]
    raw = _alert("firing").model_dump_json().encode()
    produce(settings.kafka, settings.topic(topics.ALERTS), [(b"k", raw)])
    caplog.set_level("INFO")
    notifier = Notifier(settings, receivers, retries=2, backoff_s=0.01, resend_s=600)
    notifier.run(idle_stop_s=3)

    dlq = [
        DlqRecord.model_validate_json(m.value())
        for m in read_committed(settings.kafka, settings.topic(topics.DLQ), 3)
    ]
    assert [(d.reason, d.detail) for d in dlq] == [
        ("delivery_failed", "receiver webhook: no answer (BadStatusLine: HELLO) after 2 attempts"),
        (
            "delivery_failed",
            "receiver slack: no answer (IncompleteRead: 3 bytes read, 97 more "
            "expected) after 2 attempts",
        ),
        (
            "delivery_failed",
            "receiver alertmanager: no answer (InvalidURL: URL can't contain "
            "control characters. '***' (found at least ' ')) after 2 attempts",
        ),
    ]
    assert notifier.counters == {
        "failed.webhook": 1,
        "failed.slack": 1,
        "failed.alertmanager": 1,
        "resend_failed.alertmanager": 1,
    }  # the firing alert, kept up
    shown = caplog.text + "".join(d.detail for d in dlq)
    assert "s3cret" not in shown and "127.0.0.1" not in shown
    group = settings.topic("tokenledger-notifier")
    assert committed_total(settings.kafka, group, settings.topic(topics.ALERTS), 1) == 1


def test_an_alert_is_not_committed_before_its_dlq_record_is_stored(
    kafka_bootstrap: str, catcher: Catcher
) -> None:
    """The DLQ topic refuses the record (it is larger than the topic allows): the notifier
    keeps it and sends it again, and commits nothing. Once the topic takes it, the next run
    stores it and commits the alert."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    from tokenledger.streams.admin.topics import admin_client

    s = isolated(kafka_bootstrap, 1)
    create_topics(
        s.kafka,
        [
            topics.TopicSpec(s.topic(topics.ALERTS)),
            topics.TopicSpec(s.topic(topics.DLQ), configs={"max.message.bytes": "200"}),
        ],
        1,
        1,
    )
    catcher.script["/hook"] = [400] * 2  # refused at once, twice: dead-lettered each run
    produce(s.kafka, s.topic(topics.ALERTS), [(b"k", _alert("firing").model_dump_json().encode())])
    receivers = [Receiver("webhook", "webhook", catcher.url + "/hook")]
    notifier = Notifier(s, receivers, retries=1)
    runner = threading.Thread(target=notifier.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: notifier.counters["dlq_retries"] >= 2, 60, "the DLQ record to be re-sent")
    finally:
        notifier.stop()
        runner.join(60)
    group, alerts = s.topic("tokenledger-notifier"), s.topic(topics.ALERTS)
    assert committed_total(s.kafka, group, alerts, 1) == 0
    assert read_committed(s.kafka, s.topic(topics.DLQ), 1, timeout=5) == []  # refused

    admin = admin_client(s.kafka)
    larger = ConfigEntry(
        "max.message.bytes", "1048588", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource("topic", s.topic(topics.DLQ), incremental_configs=[larger])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    again = Notifier(s, receivers, retries=1)
    again.run(idle_stop_s=3)
    (record,) = read_committed(s.kafka, s.topic(topics.DLQ), 1)
    assert DlqRecord.model_validate_json(record.value()).detail == (
        "receiver webhook: HTTP 400 (not retried)"
    )
    assert (again.counters, committed_total(s.kafka, group, alerts, 1)) == (
        {"failed.webhook": 1},
        1,
    )

"""Where alerts go: receivers from the environment, each receiver's payload, and delivery
with bounded retries.

Receivers (any number at once; at least one is needed to run ``tokenledger notify``):

========================================  ================================================
``TOKENLEDGER_NOTIFY_WEBHOOK_URL``        generic JSON webhook: the alert as it is on the
                                          alerts topic; ``TOKENLEDGER_NOTIFY_WEBHOOK_TOKEN``
                                          adds ``Authorization: Bearer <token>``
``TOKENLEDGER_NOTIFY_SLACK_URL``          Slack incoming webhook (``text`` + ``blocks``)
``TOKENLEDGER_NOTIFY_PAGERDUTY_KEY``      PagerDuty Events API v2 routing key: ``trigger``
                                          and ``resolve`` with the fingerprint as
                                          ``dedup_key``; ``TOKENLEDGER_NOTIFY_PAGERDUTY_URL``
                                          overrides the endpoint
``TOKENLEDGER_NOTIFY_ALERTMANAGER_URL``   Alertmanager base URL: POST ``/api/v2/alerts``
``TOKENLEDGER_NOTIFY_FILE``               a local file: one JSON alert per line
========================================  ================================================

URLs, keys and tokens are secrets (a Slack or webhook URL carries its token in the path):
they are never logged, and every error text that leaves this module has them, and any
other URL, replaced by ``***``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tokenledger.backoff import delays
from tokenledger.contract.common import format_evidence
from tokenledger.contract.messages import Alert
from tokenledger.streams.errors import UserError
from tokenledger.streams.redact import scrub, url_secrets

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
RETRYABLE_STATUS = frozenset({408, 425, 429}) | frozenset(range(500, 600))
USER_AGENT = "tokenledger-notify"


@dataclass(frozen=True)
class Receiver:
    name: str
    kind: str  # webhook | slack | pagerduty | alertmanager | file
    url: str = field(repr=False)
    secret: str = field(default="", repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        if self.kind == "file":
            return ()
        return url_secrets(self.url, *((self.secret,) if self.secret else ()))


def receivers_from_env(env: Mapping[str, str] | None = None) -> list[Receiver]:
    """The receivers configured in ``env``; a malformed one is a UserError naming the variable
    (never its value)."""
    env = os.environ if env is None else env
    found: list[Receiver] = []

    def url(var: str) -> str | None:
        value = (env.get(var) or "").strip()
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise UserError(f"{var} must be an http:// or https:// URL")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise UserError(f"{var} holds a space or a control character; percent-encode it")
        try:
            host = urllib.parse.urlsplit(value).hostname
        except ValueError:
            host = None
        if not host:
            raise UserError(f"{var} is not a URL with a host")
        return value

    if (u := url("TOKENLEDGER_NOTIFY_WEBHOOK_URL")) is not None:
        found.append(
            Receiver("webhook", "webhook", u, env.get("TOKENLEDGER_NOTIFY_WEBHOOK_TOKEN", ""))
        )
    if (u := url("TOKENLEDGER_NOTIFY_SLACK_URL")) is not None:
        found.append(Receiver("slack", "slack", u))
    key = (env.get("TOKENLEDGER_NOTIFY_PAGERDUTY_KEY") or "").strip()
    pd_url = url("TOKENLEDGER_NOTIFY_PAGERDUTY_URL")
    if key:
        found.append(Receiver("pagerduty", "pagerduty", pd_url or PAGERDUTY_EVENTS_URL, key))
    elif pd_url:
        raise UserError(
            "TOKENLEDGER_NOTIFY_PAGERDUTY_URL is set but TOKENLEDGER_NOTIFY_PAGERDUTY_KEY is not"
        )
    if (u := url("TOKENLEDGER_NOTIFY_ALERTMANAGER_URL")) is not None:
        found.append(Receiver("alertmanager", "alertmanager", u.rstrip("/") + "/api/v2/alerts"))
    path = (env.get("TOKENLEDGER_NOTIFY_FILE") or "").strip()
    if path:
        found.append(Receiver("file", "file", path))
    return found


# -- payloads --------------------------------------------------------------------------------


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


def evidence_text(alert: Alert) -> dict[str, str]:
    """The evidence for people: dollars for money units, percentages for shares."""
    ev = alert.evidence
    return {
        "observed": format_evidence(ev.observed, ev.unit),
        "expected": format_evidence(ev.expected, ev.unit),
    }


def webhook_payload(alert: Alert) -> Any:
    """The alert as the contract has it (exact integers), with ``evidence_text`` beside."""
    return {**alert.model_dump(mode="json"), "evidence_text": evidence_text(alert)}


_SLACK_ICON = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
}


def slack_payload(alert: Alert) -> Any:
    icon = ":white_check_mark:" if alert.status == "resolved" else _SLACK_ICON[alert.severity]
    title = f"{icon} [{alert.status.upper()}] {alert.detector} on {alert.scope}"
    ev, text = alert.evidence, evidence_text(alert)
    context = (
        f"observed {text['observed']} vs expected {text['expected']}, "
        f"window {_iso(ev.window_start)} to {_iso(ev.window_end)}; fingerprint `{alert.fingerprint}`"
    )
    return {
        "text": f"{title}: {alert.summary}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{alert.summary}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def pagerduty_payload(alert: Alert, routing_key: str) -> Any:
    if alert.status == "resolved":
        return {
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.fingerprint,
        }
    ev, text = alert.evidence, evidence_text(alert)
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "payload": {
            "summary": alert.summary[:1024],
            "source": "tokenledger",
            "severity": alert.severity,
            "timestamp": _iso(alert.starts_at),
            "component": alert.scope,
            "group": alert.tenant_id,
            "class": alert.detector,
            "custom_details": {
                "observed": ev.observed,
                "expected": ev.expected,
                "unit": ev.unit,
                "observed_text": text["observed"],
                "expected_text": text["expected"],
                "window_start": _iso(ev.window_start),
                "window_end": _iso(ev.window_end),
                "tenant_id": alert.tenant_id,
                "feature": alert.feature,
            },
        },
    }


def alertmanager_payload(alert: Alert, valid_until: datetime | None = None) -> Any:
    """Alertmanager's alert; a firing one carries ``endsAt`` = ``valid_until`` (the notifier
    re-sends it well before then, as Prometheus does, so it stays active while it fires and
    expires on its own if the notifier is gone)."""
    labels = {
        "alertname": f"tokenledger_{alert.detector}",
        "detector": alert.detector,
        "severity": alert.severity,
        "tenant_id": alert.tenant_id,
        "scope": alert.scope,
        "fingerprint": alert.fingerprint,
    }
    if alert.feature:
        labels["feature"] = alert.feature
    ev, text = alert.evidence, evidence_text(alert)
    item: dict[str, Any] = {
        "labels": labels,
        "annotations": {
            "summary": alert.summary,
            "observed": text["observed"],
            "expected": text["expected"],
            "observed_value": str(ev.observed),
            "expected_value": str(ev.expected),
            "unit": ev.unit,
            "window_start": _iso(ev.window_start),
            "window_end": _iso(ev.window_end),
        },
        "startsAt": _iso(alert.starts_at),
    }
    if alert.status == "resolved":
        item["endsAt"] = _iso(alert.ends_at or alert.issued_at)
    elif valid_until is not None:
        item["endsAt"] = _iso(valid_until)
    return [item]


def payload(receiver: Receiver, alert: Alert, valid_until: datetime | None = None) -> Any:
    if receiver.kind == "slack":
        return slack_payload(alert)
    if receiver.kind == "pagerduty":
        return pagerduty_payload(alert, receiver.secret)
    if receiver.kind == "alertmanager":
        return alertmanager_payload(alert, valid_until)
    return webhook_payload(alert)


# -- delivery --------------------------------------------------------------------------------


Send = Callable[[str, bytes, dict[str, str], float], int]


def http_send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body``; the HTTP status (errors are statuses too; no answer raises OSError)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class Delivery:
    ok: bool
    attempts: int
    error: str = ""


def deliver(
    receiver: Receiver,
    alert: Alert,
    *,
    retries: int = 5,
    backoff_s: float = 0.5,
    timeout_s: float = 10.0,
    send: Send = http_send,
    sleep: Callable[[float], None] = time.sleep,
    valid_until: datetime | None = None,
) -> Delivery:
    """Deliver ``alert`` to ``receiver``: up to ``retries`` attempts on a 5xx, 408, 425 or
    429 answer or no usable answer, waiting ``backoff_s`` doubled after each; a 4xx fails at
    once. Never raises: whatever goes wrong on the way (a refused connection, a URL the
    HTTP client rejects, a reply that is not HTTP or breaks off) is a failed attempt."""
    body = json.dumps(payload(receiver, alert, valid_until), separators=(",", ":")).encode()
    if receiver.kind == "file":
        return _append(receiver, body)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if receiver.kind == "webhook" and receiver.secret:
        headers["Authorization"] = f"Bearer {receiver.secret}"
    error, waits = "", delays(backoff_s)
    for attempt in range(1, retries + 1):
        try:
            status = send(receiver.url, body, headers, timeout_s)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
            error = f"no answer ({_failure(exc)})"
        else:
            if 200 <= status < 300:
                return Delivery(True, attempt)
            error = f"HTTP {status}"
            if status not in RETRYABLE_STATUS:
                return Delivery(
                    False, attempt, scrub(f"{error} (not retried)", receiver.secrets, urls=True)
                )
        if attempt < retries:
            sleep(next(waits))
    return Delivery(
        False, retries, scrub(f"{error} after {retries} attempts", receiver.secrets, urls=True)
    )


def _failure(exc: Exception) -> str:
    """``BadStatusLine: HELLO``, ``IncompleteRead: 3 bytes read, 97 more expected``."""
    name = type(exc).__name__
    detail = " ".join(str(getattr(exc, "reason", exc)).split())[:200]
    if detail.startswith(f"{name}(") and detail.endswith(")"):
        detail = detail[len(name) + 1 : -1]
    return f"{name}: {detail}" if detail else name


def _append(receiver: Receiver, body: bytes) -> Delivery:
    try:
        path = Path(receiver.url)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as f:
            f.write(body + b"\n")
    except OSError as exc:
        return Delivery(False, 1, f"cannot write the alerts file ({exc.strerror})")
    return Delivery(True, 1)

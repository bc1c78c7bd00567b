"""Every topic's name, once, with the configs `tokenledger topics create` applies."""

from __future__ import annotations

from dataclasses import dataclass, field

REQUESTS = "tokenledger.requests.v1"
USAGE = "tokenledger.usage.v1"
OUTCOMES = "tokenledger.outcomes.v1"
USAGE_ENRICHED = "tokenledger.usage.enriched.v1"
BUDGETS = "tokenledger.budgets.v1"
SIGNALS = "tokenledger.signals.v1"
ALERTS = "tokenledger.alerts.v1"
DLQ = "tokenledger.dlq.v1"
CLAIMS = "tokenledger.claims.v1"
"""Claims on logical requests by idempotency key, kept by the edge instances (compacted)."""
WORKER_CHANGELOG = "tokenledger.worker.changelog.v1"
"""The stream workers' state (dedup, windows), written in their transactions (internal)."""

_COMPACTED = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": "3600000",
}
_WEEK_MS = str(7 * 24 * 3600 * 1000)
_MONTH_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    configs: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(REQUESTS, configs={"retention.ms": _WEEK_MS}),
    TopicSpec(USAGE, configs={"retention.ms": _WEEK_MS}),
    TopicSpec(OUTCOMES, configs={"retention.ms": _WEEK_MS}),
    TopicSpec(USAGE_ENRICHED, configs={"retention.ms": _WEEK_MS}),
    # Budgets and signals are state: compacted, read from the start by every consumer.
    TopicSpec(BUDGETS, compacted=True, configs=_COMPACTED),
    TopicSpec(SIGNALS, compacted=True, configs=_COMPACTED),
    TopicSpec(ALERTS, configs={"retention.ms": _MONTH_MS}),
    TopicSpec(DLQ, configs={"retention.ms": _MONTH_MS}),
    TopicSpec(WORKER_CHANGELOG, compacted=True, configs=_COMPACTED),
    TopicSpec(CLAIMS, compacted=True, configs=_COMPACTED),
)


def namespaced(name: str, namespace: str) -> str:
    """``name`` inside ``namespace`` (TOKENLEDGER_TOPIC_NAMESPACE): several environments or
    test runs can share one cluster. An empty namespace is the plain name."""
    return f"{namespace}.{name}" if namespace else name

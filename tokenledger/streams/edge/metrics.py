"""The edge's Prometheus metrics (prometheus_client, one registry per app)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.accepted = Counter(
            "tokenledger_edge_events_accepted", "events produced to Kafka", ["type"], registry=r
        )
        self.rejected = Counter(
            "tokenledger_edge_events_rejected",
            "events or spans refused, by reason",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "tokenledger_edge_requests_refused",
            "whole requests refused, by reason",
            ["reason"],
            registry=r,
        )
        self.spans_skipped = Counter(
            "tokenledger_edge_spans_skipped",
            "spans not counted as model calls, by reason (no_usage, aggregate_*)",
            ["reason"],
            registry=r,
        )
        self.produce_seconds = Histogram(
            "tokenledger_edge_produce_seconds",
            "time from send to broker acknowledgement",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.decisions = Counter(
            "tokenledger_edge_decisions", "budget checks answered, by state", ["state"], registry=r
        )

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

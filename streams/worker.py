"""The stream worker: the usage processor on the transactional engine.

Run with `tokenledger worker`; scale out by running more with distinct ``--instance``
names in the same consumer group (one partition is one unit of work).
"""

from __future__ import annotations

import socket
from datetime import timedelta

from schemas.pricing import PriceTable, PriceTableError, load_price_table
from streams import topics
from streams.config import Settings
from streams.engine import EngineConfig, TransactionalEngine
from streams.errors import UserError
from streams.kafka_admin import create_topics, describe_topics
from streams.state import ChangelogState
from streams.usage import UsageTask, UsageTopics

GROUP = "tokenledger-usage"


def default_instance() -> str:
    return f"{socket.gethostname()}-0"


def build(
    settings: Settings,
    instance_id: str | None = None,
    *,
    prices: PriceTable | None = None,
    dedup_retention: timedelta | None = None,
    allowed_lateness: timedelta | None = None,
    max_batch: int = 2000,
) -> TransactionalEngine:
    """The usage worker for ``settings``; checks and creates the topics it needs."""
    if prices is None:
        try:
            prices = load_price_table()
        except PriceTableError as exc:
            raise UserError(str(exc)) from None
    names = {t.name: settings.topic(t.name) for t in topics.TOPICS}
    specs = [topics.TopicSpec(names[t.name], t.compacted, t.configs) for t in topics.TOPICS]
    create_topics(settings.kafka, specs, settings.partitions, settings.replication_factor)
    _check_copartitioned(settings, names[topics.USAGE], names[topics.WORKER_CHANGELOG])
    out = UsageTopics(enriched=names[topics.USAGE_ENRICHED], dlq=names[topics.DLQ])
    options = {}
    if dedup_retention is not None:
        options["dedup_retention"] = dedup_retention
    if allowed_lateness is not None:
        options["allowed_lateness"] = allowed_lateness
    table = prices

    def factory(partition: int, state: ChangelogState) -> UsageTask:
        return UsageTask(state, table, out, **options)

    config = EngineConfig(
        group_id=settings.topic(GROUP),
        inputs=(names[topics.USAGE],),
        changelog=names[topics.WORKER_CHANGELOG],
        instance_id=instance_id or default_instance(),
        bootstrap=settings.kafka,
        max_batch=max_batch,
    )
    return TransactionalEngine(config, factory)


def _check_copartitioned(settings: Settings, *names: str) -> None:
    described = describe_topics(settings.kafka, names)
    counts = {n: int(described[n]["partitions"]) for n in names}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{n}={c}" for n, c in counts.items())
        raise UserError(
            f"topics must have the same partition count (state follows input partitions): "
            f"{detail}; recreate the changelog with the input's count"
        )

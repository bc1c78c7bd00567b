"""The stream worker process: partition tasks (tokenledger.streams.worker.task) on the transactional
engine, with the budget definitions followed from their compacted topic.

Run with `tokenledger worker`; scale out by running more with distinct ``--instance``
names in the same consumer group (one partition is one unit of work).
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from tokenledger.contract import topics
from tokenledger.contract.price_book import PriceBook, load_price_book
from tokenledger.contract.price_file import PriceFileError
from tokenledger.signing import SigningKeyError
from tokenledger.streams.admin.signer import writer_keys
from tokenledger.streams.admin.topics import create_topics, partition_counts
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError
from tokenledger.streams.worker.anomalies import DetectorConfig
from tokenledger.streams.worker.breakers import BreakerConfig
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.budget_feed import BudgetFeed
from tokenledger.streams.worker.budgets import (
    DEFAULT_HEARTBEAT,
    DEFAULT_RESERVATION_TIMEOUT,
)
from tokenledger.streams.worker.engine import EngineConfig, TransactionalEngine
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.task import PartitionTask, partition_task

GROUP = "tokenledger-worker"


def default_instance() -> str:
    return f"{socket.gethostname()}-0"


def build(
    settings: Settings,
    instance_id: str | None = None,
    *,
    prices: PriceBook | None = None,
    dedup_retention: timedelta | None = None,
    allowed_lateness: timedelta | None = None,
    reservation_timeout: timedelta = DEFAULT_RESERVATION_TIMEOUT,
    heartbeat: timedelta = DEFAULT_HEARTBEAT,
    max_batch: int = 2000,
    detectors: DetectorConfig | None = None,
    state: str = "disk",
    breakers: BreakerConfig | None = None,
) -> TransactionalEngine:
    """The worker for ``settings``; checks and creates the topics it needs. ``state``:
    ``disk`` keeps each partition's state in RocksDB under
    ``$TOKENLEDGER_HOME/state/<group>/<instance>/``; ``memory`` rebuilds it from the whole
    changelog at every start."""
    if prices is None:
        try:
            prices = load_price_book()
        except PriceFileError as exc:
            raise UserError(str(exc)) from None
    try:
        signer, ring = writer_keys()  # before the broker: a key mistake is one line at once
    except SigningKeyError as exc:
        raise UserError(str(exc)) from None
    names = {t.name: settings.topic(t.name) for t in topics.TOPICS}
    specs = [topics.TopicSpec(names[t.name], t.compacted, t.configs) for t in topics.TOPICS]
    # outcomes is the sink's and claims the edge's: offered to a developer's broker, never
    # needed by the worker (whose principal may not even see them)
    refusable = {names[topics.OUTCOMES], names[topics.CLAIMS]}
    create_topics(
        settings.kafka, specs, settings.partitions, settings.replication_factor, refusable
    )
    _check_copartitioned(
        settings, names[topics.USAGE], names[topics.REQUESTS], names[topics.WORKER_CHANGELOG]
    )
    options: dict[str, Any] = {"trusted_cost_services": settings.trusted_cost_services}
    if dedup_retention is not None:
        options["dedup_retention"] = dedup_retention
    if allowed_lateness is not None:
        options["allowed_lateness"] = allowed_lateness
    book = BudgetDefinitions(names[topics.BUDGETS], ring)
    feed = BudgetFeed(settings, names[topics.BUDGETS], book)
    feed.catch_up()
    book.changed.clear()

    def factory(partition: int, state: State) -> PartitionTask:
        return partition_task(
            state,
            prices,
            book,
            names,
            reservation_timeout=reservation_timeout,
            heartbeat=heartbeat,
            detectors=detectors,
            signer=signer,
            breakers=breakers,
            **options,
        )

    instance = instance_id or default_instance()
    state_dir = settings.home / "state" / settings.topic(GROUP) / instance
    config = EngineConfig(
        group_id=settings.topic(GROUP),
        inputs=(names[topics.USAGE], names[topics.REQUESTS]),
        changelog=names[topics.WORKER_CHANGELOG],
        instance_id=instance,
        bootstrap=settings.kafka,
        max_batch=max_batch,
        state_dir=str(state_dir) if state == "disk" else None,
    )
    engine = TransactionalEngine(config, factory)

    def follow_budgets() -> None:
        feed.poll()
        if book.changed:
            for task in engine.tasks.values():
                task.budgets.on_budgets_changed(book.changed)  # type: ignore[attr-defined]
            book.changed.clear()

    engine.hooks.append(follow_budgets)
    return engine


def _check_copartitioned(settings: Settings, *names: str) -> None:
    counts = partition_counts(settings.kafka, names)
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{n}={c}" for n, c in counts.items())
        raise UserError(
            f"topics must have the same partition count (state follows input partitions): "
            f"{detail}; recreate them with one count"
        )

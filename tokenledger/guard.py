"""BudgetGuard: a Python gateway's local answer to "may tenant T (feature F) spend now?".

A background thread reads the compacted signals topic from the beginning into a
``SignalBook`` (tokenledger.signal_book), which answers ``check()`` from memory in well under
a microsecond. Per-request guardrails (token, cost, retry and tool-step limits) are checked
first. The edge service (``tokenledger serve``) answers gateways in other languages with the
same book, fed by its own agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from tokenledger import signing
from tokenledger.contract.messages import Signal
from tokenledger.decision import ALLOW, Decision, State
from tokenledger.freshness import Freshness
from tokenledger.kafka_config import client_config
from tokenledger.signal_book import Guardrails, SignalBook
from tokenledger.topic_names import signals_topic

log = logging.getLogger(__name__)

__all__ = ["ALLOW", "BudgetGuard", "Decision", "Guardrails", "State"]


class BudgetGuard:
    """A Python gateway's budget check: "may tenant T (feature F) spend now?", from memory.

    ``start()`` (or ``with``) starts a reader thread that follows the signals topic from its
    beginning; ``check()`` then answers in well under a microsecond, applying the
    ``guardrails`` first::

        with BudgetGuard(on_unavailable="open") as guard:
            guard.wait_ready(30)
            decision = guard.check("acme", feature="answer", est_cost=2_500_000)
            if not decision.allowed:
                raise PermissionError(decision.reason)

    Leaving the block, or ``close()``, stops the reader. Thread-safe: one guard serves every
    request thread while its reader applies signals. ``check()`` never raises and never
    waits on the network: until the topic has been read to its end, or once the broker has
    been lost for ``stale_after_s``, it answers by ``on_unavailable`` (open: allow, closed:
    deny) with ``degraded`` set. The constructor raises on invalid arguments (an
    ``on_unavailable`` other than open or closed, a private key in ``public_keys``).
    """

    def __init__(
        self,
        *,
        bootstrap: str | None = None,
        topic: str | None = None,
        guardrails: Guardrails | None = None,
        on_unavailable: Literal["open", "closed"] = "open",
        stale_after_s: float = 30.0,
        kafka_config: Mapping[str, Any] | None = None,
        public_keys: signing.PublicKeyring | Literal["env"] | None = "env",
    ) -> None:
        """``topic``: default, the signals topic in TOKENLEDGER_TOPIC_NAMESPACE (the
        workers' namespace). ``public_keys``: only signals signed by one of their private
        keys (the workers') count; default: TOKENLEDGER_PUBLIC_KEYS when set
        (tokenledger.signing); None accepts unsigned ones. A guard takes public keys only.
        Per scope only a signal newer than the one held counts (a replay is ignored)."""
        topic = topic or signals_topic()
        self.book = SignalBook(
            topic=topic,
            guardrails=guardrails,
            on_unavailable=on_unavailable,
            stale_after_s=stale_after_s,
            public_keys=public_keys,
        )
        self.topic = topic
        self._config = client_config(
            bootstrap,
            {
                "group.id": f"tokenledger-guard-{id(self):x}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                **(kafka_config or {}),
            },
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._said_missing = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> BudgetGuard:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tokenledger-guard", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> BudgetGuard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> bool:
        """Has the guard read the signals topic up to its end at least once?"""
        return self.book.ready()

    def not_ready_reason(self) -> str | None:
        """Why ``ready()`` is False (e.g. the signals topic does not exist); None when ready."""
        return self.book.not_ready_reason()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.book.ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.book.ready()

    # -- the gateway's question (the book answers) ----------------------------------------

    def check(
        self,
        tenant_id: str,
        feature: str | None = None,
        est_cost: int | None = None,
        route: str | None = None,
        attempt: int = 1,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        tool_steps: int | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> Decision:
        """May this request spend now? ``est_cost`` is in nano-USD. A retry (``attempt`` > 1)
        is refused while its route's retry budget is used; with ``provider`` and ``model``
        a call to an open circuit breaker is refused at once (docs/worker.md)."""
        return self.book.check(
            tenant_id,
            feature,
            est_cost,
            route,
            attempt,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            tool_steps=tool_steps,
            provider=provider,
            model=model,
        )

    def state(self) -> dict[str, Signal]:
        """Current non-allow signal per scope (a copy)."""
        return self.book.state()

    def apply(
        self, key: bytes | None, value: bytes | None, headers: signing.Headers = None
    ) -> None:
        """Apply one record of the signals topic (the consumer thread calls this)."""
        self.book.apply(key, value, headers)

    @property
    def signals_seen(self) -> int:
        return self.book.signals_seen

    @property
    def invalid_signals(self) -> int:
        return self.book.invalid_signals

    @property
    def unauthorized_signals(self) -> int:
        return self.book.unauthorized_signals

    @property
    def replayed_signals(self) -> int:
        return self.book.replayed_signals

    @property
    def freshness(self) -> Freshness:
        return self.book.freshness

    @property
    def public_keys(self) -> signing.PublicKeyring | None:
        return self.book.public_keys

    # -- the consumer thread -------------------------------------------------------------

    def topic_exists(self, exists: bool) -> None:
        """What the metadata says about the topic before the guard is ready (the consumer
        thread calls this). A missing topic is logged once: a guard that fails open on a
        topic nobody writes would otherwise stay silent."""
        self.book.topic_missing(not exists)
        if not exists and not self._said_missing:
            self._said_missing = True
            log.warning(
                "the signals topic %r does not exist: this guard is not ready and fails %s "
                "until it does (are TOKENLEDGER_TOPIC_NAMESPACE and topic= those of the "
                "workers?)",
                self.topic,
                self.book.on_unavailable,
            )

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.book.lost()

    def _run(self) -> None:
        from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

        book = self.book
        consumer = Consumer({**self._config, "error_cb": self._on_error})
        partitions_at_eof: set[int] = set()
        partitions: list[int] = []
        next_heartbeat = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_heartbeat:
                    next_heartbeat = now + 1.0
                    try:
                        meta = consumer.list_topics(self.topic, timeout=1.0)
                        found = meta.topics.get(self.topic)
                        if found is not None and found.error is None:
                            book.regained()
                            if not book.ready():
                                self.topic_exists(True)
                            if not partitions:
                                partitions = sorted(found.partitions)
                                consumer.assign(
                                    [TopicPartition(self.topic, p, -2) for p in partitions]
                                )
                        elif not book.ready() and _missing(found):
                            book.regained()  # the broker answers; the topic is not there
                            self.topic_exists(False)
                    except KafkaException:
                        book.lost(now)
                if partitions:
                    for msg in consumer.consume(num_messages=500, timeout=0.05):
                        err = msg.error()
                        if err is None:
                            book.apply(msg.key(), msg.value(), msg.headers())
                        elif err.code() == KafkaError._PARTITION_EOF:
                            partitions_at_eof.add(msg.partition() or 0)
                    if not book.ready() and partitions_at_eof >= set(partitions):
                        book.caught_up()
                else:
                    self._stop.wait(0.05)
                book.refresh()
        finally:
            consumer.close()


def _missing(found: Any) -> bool:
    """Does a topic's metadata say it does not exist (rather than being briefly unavailable)?"""
    from confluent_kafka import KafkaError

    return found is None or found.error.code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
    )

"""The Ledger: emits request, usage and outcome events to Kafka without ever blocking.

``emit()`` appends the event to an in-memory queue and returns (well under a microsecond).
A background thread (tokenledger/producer_thread.py) serializes events and hands them to a
confluent-kafka producer (idempotence on, acks=all, batched). When the broker is
unreachable, a delivery fails after ``delivery_timeout_ms`` or the queue is full, the event
goes to the local spill (tokenledger/spill.py); while anything is spilled, new events are
spilled too, so the spill is replayed in order when the broker answers again
(tokenledger/spill_replay.py decides when). ``close()``, and interpreter exit, flush what
can be flushed and spill the rest for the next Ledger on the same spill_dir.

What can be lost: only events still in memory when the process is killed (SIGKILL, OOM)
or the host crashes: the queue (bounded by ``queue_max``, normally milliseconds of
traffic) and, for host crashes, what the spill's fsync policy allows.

A replay re-sends a whole spill segment when part of it failed, so an event may arrive
twice; both copies share an ``event_id`` and the pipeline counts it once.
"""

from __future__ import annotations

import atexit
import os
import re
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tokenledger import tokens
from tokenledger.bad_input import BAD_INPUT, AsGiven, BadInput, as_given, first_refusal
from tokenledger.contract.common import NAME_PATTERN
from tokenledger.contract.messages import OutcomeEvent, RequestEvent, UsageEvent
from tokenledger.contract.price_book import PriceBook, load_price_book
from tokenledger.kafka_config import sdk_producer
from tokenledger.paths import home_dir
from tokenledger.producer_thread import Emittable, ProducerThread
from tokenledger.prompts import Prompt
from tokenledger.spill import FsyncPolicy, Spill
from tokenledger.spill_replay import SpillReplay
from tokenledger.topic_names import TopicNames

if TYPE_CHECKING:
    from tokenledger.context_budget import ContextReport
    from tokenledger.track import Call

__all__ = ["Emittable", "Ledger", "LedgerClosedError", "TopicNames"]


class LedgerClosedError(RuntimeError):
    """emit() after close(): a programming error, not a broker outage."""


def new_id() -> str:
    return os.urandom(16).hex()


def default_spill_dir() -> Path:
    return home_dir() / "spill"


class Ledger:
    """Reports a service's LLM calls to Kafka: request, usage and outcome events.

    One per service process, created at start (it loads the price book and starts its
    producer thread), shared by every thread, closed at exit::

        with Ledger("support-bot") as ledger:
            with ledger.track(tenant_id="acme", feature="answer", model="gpt-4o",
                              provider="openai", prompt=messages) as call:
                call.record(client.chat.completions.create(model="gpt-4o", messages=messages))

    Without ``with``, ``close()`` (or interpreter exit) flushes. Thread-safe: ``emit``,
    ``track``, ``outcome``, ``stats`` and ``flush`` may be called from any thread; one
    background thread talks to Kafka. Never raises into the caller on a broker outage or a
    bad argument: events wait in the spill, events the contract refuses go out as given for
    the dead-letter topic. Only the constructor (an invalid ``service`` or ``environment``,
    an unreadable price file, a Kafka setting the client refuses) and ``emit()`` after
    ``close()`` (``LedgerClosedError``) raise.
    """

    def __init__(
        self,
        service: str,
        *,
        environment: str = "prod",
        bootstrap: str | None = None,
        kafka_config: Mapping[str, Any] | None = None,
        topics: TopicNames | None = None,
        spill_dir: str | Path | None = None,
        fsync: FsyncPolicy = "interval",
        queue_max: int = 100_000,
        delivery_timeout_ms: int = 10_000,
        retry_interval_s: float = 1.0,
        prices: PriceBook | None = None,
        include_prompts: bool = False,
    ) -> None:
        for name, value in (("service", service), ("environment", environment)):
            if not re.match(NAME_PATTERN, value):
                raise ValueError(f"{name} {value!r} is not a valid name ({NAME_PATTERN})")
        self.service = service
        self.environment = environment
        self.include_prompts = include_prompts
        self.topics = topics or TopicNames.in_namespace()  # TOKENLEDGER_TOPIC_NAMESPACE
        self._topic_of: dict[type, str] = {
            RequestEvent: self.topics.requests,
            UsageEvent: self.topics.usage,
            OutcomeEvent: self.topics.outcomes,
        }
        # loaded here, at service start, so no request waits for it (a bad price file is
        # reported now, not inside a metered call)
        self._prices = prices or load_price_book()
        self._queue_max = queue_max
        producer = sdk_producer(bootstrap, delivery_timeout_ms, queue_max, kafka_config)
        self._spill = Spill(Path(spill_dir or default_spill_dir()), fsync=fsync)
        self._states = SpillReplay(retry_interval_s, spilling=self._spill.sealed_or_current())
        self._pending: deque[Emittable | AsGiven] = deque()
        self._sender = ProducerThread(
            self._pending,
            producer,
            self._spill,
            self._states,
            self._topic_of,
            delivery_timeout_ms / 1000,
        )
        self._bad_input = BadInput()
        self._closing = False
        self._closed = False
        self._sender.start()
        tokens.warm_up()  # tiktoken's encodings load off the callers' path
        ref = weakref.ref(self)
        atexit.register(_close_at_exit, ref)

    # -- the caller's side ---------------------------------------------------------------

    def emit(self, event: Emittable | AsGiven) -> None:
        """Queue ``event`` for Kafka. Never blocks, never raises on a broker outage."""
        if self._closing:
            raise LedgerClosedError("emit() after close()")
        if len(self._pending) >= self._queue_max:
            self._sender.spill_now([event])
            return
        self._pending.append(event)

    def track(
        self,
        *,
        tenant_id: str,
        feature: str,
        model: str,
        provider: str,
        route: str = "",
        prompt_version: str = "",
        user_scope: str = "",
        prompt: Prompt | None = None,
        max_output_tokens: int = 0,
        idempotency_key: str | None = None,
        request_id: str | None = None,
        attempt: int = 1,
        task_id: str | None = None,
        batch: bool = False,
        service_tier: str = "",
        context: ContextReport | None = None,
        context_trimmed_tokens: int = 0,
    ) -> Call:
        """One LLM call, as a context manager (sync or async) or a decorator; see
        tokenledger/track.py. Entering emits the request event (the reservation), leaving
        the usage event. Never raises: a value the contract refuses sends the event as
        given, for the dead-letter topic.

        - ``tenant_id``: who pays; budgets and reports are per tenant.
        - ``feature``: the product feature making the call (``"answer"``).
        - ``model``, ``provider``: as the price book names them (``"gpt-4o"``,
          ``"openai"``); they choose the price.
        - ``route``: the code path or endpoint, for route guardrails and retry budgets.
        - ``prompt_version``: the prompt template's version, to compare versions' cost.
        - ``user_scope``: a finer grouping inside the tenant (a team, a plan), optional.
        - ``prompt``: the text or chat messages sent; their tokens, estimated with
          tiktoken, make the reservation (sent as text only with ``include_prompts``).
        - ``max_output_tokens``: the output limit the call is made with; reserved in full.
        - ``idempotency_key``: the same for every retry of one logical request (default:
          ``request_id``, itself a fresh id); the pipeline counts retries' cost apart.
        - ``request_id``: the logical request this call belongs to.
        - ``attempt``: 1 for the first try; ``call.retry()`` counts on.
        - ``task_id``: the task the call is part of, for ``outcome()`` (cost per
          successful task).
        - ``batch``: made through the provider's batch API (batch prices).
        - ``service_tier``: the provider's tier (``"flex"``, ``"priority"``); empty is
          standard. A tier the response reports is kept instead.
        - ``context``: a ``ContextBudget.measure()`` report; its segments over budget
          are recorded on the usage event.
        - ``context_trimmed_tokens``: input tokens a context budget kept out of the
          prompt (``ContextBudget.trimmed_tokens``), for the savings report.
        """
        from tokenledger.track import Call

        return Call(
            self,
            tenant_id=tenant_id,
            feature=feature,
            model=model,
            provider=provider,
            route=route,
            prompt_version=prompt_version,
            user_scope=user_scope,
            prompt=prompt,
            max_output_tokens=max_output_tokens,
            idempotency_key=idempotency_key,
            request_id=request_id,
            attempt=attempt,
            task_id=task_id,
            batch=batch,
            service_tier=service_tier,
            context=context,
            context_trimmed_tokens=context_trimmed_tokens,
        )

    def outcome(
        self,
        task_id: str,
        success: bool,
        *,
        tenant_id: str,
        feature: str,
        request_id: str | None = None,
        route: str = "",
        user_scope: str = "",
        prompt_version: str = "",
        model: str = "none",
        provider: str = "none",
    ) -> None:
        """Report that a task (one or more calls) finished, for cost per successful task."""
        from datetime import UTC, datetime

        rid = request_id or new_id()
        fields: dict[str, Any] = dict(
            event_id=new_id(),
            request_id=rid,
            idempotency_key=rid,
            ts=datetime.now(UTC),
            tenant_id=tenant_id,
            user_scope=user_scope,
            service=self.service,
            feature=feature,
            route=route,
            prompt_version=prompt_version,
            model=model,
            provider=provider,
            environment=self.environment,
            task_id=task_id,
            success=success,
        )
        try:
            event = OutcomeEvent(**fields)
        except BAD_INPUT as exc:  # never raised into the caller: sent as given
            self.emit_as_given(OutcomeEvent, fields, exc)
        else:
            self.emit(event)

    def emit_as_given(self, model: type[Emittable], fields: dict[str, Any], exc: Exception) -> None:
        """An event ``exc`` kept from being built: counted, its cause logged once, and sent
        as given, for the worker to dead-letter with its raw bytes and reason."""
        if not isinstance(exc, ValidationError):  # e.g. pricing max_output_tokens=None
            exc = first_refusal(model, fields) or exc  # name the field to fix
        self._bad_input.invalid(model.model_fields["kind"].default, exc)
        self.emit(as_given(model, self._topic_of[model], fields))

    @property
    def prices(self) -> PriceBook:
        return self._prices

    def stats(self) -> dict[str, int]:
        """Counters since start; ``queued`` counts events not yet handed to the producer."""
        out = self._sender.counts()
        out["queued"] = len(self._pending)
        out["unreadable_usage"] = self._bad_input.unreadable_usage
        out["invalid_events"] = self._bad_input.invalid_events  # sent as given, for the DLQ
        out["degraded"] = int(self._states.spilling)
        return out

    def unreadable_usage(self, response: object, error: Exception) -> None:
        """A tracked call's response had no usage this SDK can read: counted, and logged
        once per response type (its usage event goes out estimated)."""
        self._bad_input.unreadable(response, error)

    def spilled_waiting(self) -> int:
        return self._spill.count()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything emitted so far is delivered; False if some is still spilled
        or in flight when ``timeout`` runs out."""
        return self._sender.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then spill whatever Kafka did not take, and stop the producer thread.
        Idempotent."""
        if self._closed:
            return
        self._closing = True
        self._sender.stop(timeout)
        self._spill.close()
        self._closed = True

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close: flush, spill what Kafka did not take, stop the thread; the caller's
        exception, if any, goes on."""
        self.close()


def _close_at_exit(ref: weakref.ReferenceType[Ledger]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger.close(timeout=10)

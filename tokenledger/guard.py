"""BudgetGuard: a gateway's local answer to "may tenant T (feature F) spend now?".

A background thread reads the compacted signals topic from the beginning and keeps the
current state of every scope in memory; ``check()`` answers from that memory in well
under a microsecond (dictionary lookups, precomputed decisions). Per-request guardrails
(token, cost, retry and tool-step limits) are checked first.

Until the guard has caught up with the topic, or after it has lost the broker for longer
than ``stale_after_s``, its knowledge may be wrong: ``on_unavailable`` chooses whether it
then fails open (allow) or closed (deny), and the decision says so (``degraded``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from schemas import topics
from schemas.common import format_usd
from schemas.messages import Signal
from tokenledger import signing
from tokenledger.freshness import Freshness
from tokenledger.kafka_config import client_config

log = logging.getLogger(__name__)

State = Literal["allow", "warn", "block", "guardrail", "unavailable"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    state: State
    reason: str
    scope: str | None = None
    degraded: bool = False


ALLOW = Decision(True, "allow", "no budget signal limits this scope")


@dataclass(frozen=True)
class Guardrails:
    """Per-request limits. Route maps take the key ``"*"`` as the default for any route."""

    max_input_tokens: Mapping[str, int] = field(default_factory=dict)
    max_output_tokens: Mapping[str, int] = field(default_factory=dict)
    max_cost_per_request_nusd: int | None = None
    max_retries: int | None = None
    max_tool_steps: int | None = None

    def check(
        self,
        route: str | None,
        attempt: int,
        est_cost: int | None,
        input_tokens: int | None,
        output_tokens: int | None,
        tool_steps: int | None,
    ) -> Decision | None:
        """A denial with its reason, or None when every limit holds."""
        route_key = route or ""
        for what, limits, value in (
            ("input tokens", self.max_input_tokens, input_tokens),
            ("output tokens", self.max_output_tokens, output_tokens),
        ):
            if value is None or not limits:
                continue
            limit = limits.get(route_key, limits.get("*"))
            if limit is not None and value > limit:
                return _deny(f"{what} {value} exceed the limit of {limit} for route {route_key!r}")
        cap = self.max_cost_per_request_nusd
        if cap is not None and est_cost is not None and est_cost > cap:
            return _deny(f"estimated cost {format_usd(est_cost, exact=True)} exceeds the "
                         f"per-request limit {format_usd(cap, exact=True)}")  # fmt: skip
        if self.max_retries is not None and attempt - 1 > self.max_retries:
            return _deny(f"attempt {attempt} exceeds the limit of {self.max_retries} retries")
        if self.max_tool_steps is not None and tool_steps is not None:
            if tool_steps > self.max_tool_steps:
                return _deny(f"{tool_steps} tool steps exceed the limit of {self.max_tool_steps}")
        return None


def _deny(reason: str) -> Decision:
    return Decision(False, "guardrail", reason)


def _decision_for(signal: Signal) -> Decision:
    of = f"({format_usd(signal.spend_nusd)} of {format_usd(signal.limit_nusd)})"
    if signal.state == "block":
        return Decision(False, "block", f"budget exhausted: {signal.reason} {of}", signal.scope)
    return Decision(True, "warn", f"{signal.reason} {of}", signal.scope)


def _scope_parts(scope: str) -> tuple[str, str | None] | None:
    parts = scope.split("/")
    if len(parts) == 2 and parts[0] == "tenant":
        return parts[1], None
    if len(parts) == 4 and parts[0] == "tenant" and parts[2] == "feature":
        return parts[1], parts[3]
    return None


class BudgetGuard:
    def __init__(
        self,
        *,
        bootstrap: str | None = None,
        topic: str = topics.SIGNALS,
        guardrails: Guardrails | None = None,
        on_unavailable: Literal["open", "closed"] = "open",
        stale_after_s: float = 30.0,
        kafka_config: Mapping[str, Any] | None = None,
        signing_key: signing.Ring | Literal["env"] = "env",
    ) -> None:
        """``signing_key``: only signals signed with it (a key or a keyring) count; default:
        TOKENLEDGER_SIGNING_KEY when set (tokenledger.signing); None accepts unsigned ones.
        Per scope only a signal newer than the one held counts (a replay is ignored)."""
        if on_unavailable not in ("open", "closed"):
            raise ValueError("on_unavailable is 'open' or 'closed'")
        self.topic = topic
        self.guardrails = guardrails
        self.on_unavailable = on_unavailable
        self.stale_after_s = stale_after_s
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
        self._tenant: dict[str, tuple[Signal, Decision]] = {}
        self._feature: dict[tuple[str, str], tuple[Signal, Decision]] = {}
        allowed = on_unavailable == "open"
        self._not_ready = Decision(allowed, "unavailable", "guard has not caught up with the "
                                   f"signals topic; failing {on_unavailable}", None, True)  # fmt: skip
        self._stale = Decision(allowed, "unavailable", f"guard lost the broker for over "
                               f"{stale_after_s:g}s; failing {on_unavailable}", None, True)  # fmt: skip
        self._mode: Decision | None = self._not_ready  # None means healthy
        self._ready = False
        self._lost_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.signals_seen = 0
        self.invalid_signals = 0
        self.unauthorized_signals = 0
        self.signing_key = signing.keyring() if signing_key == "env" else signing_key
        self.freshness = Freshness("signal")

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> BudgetGuard:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tokenledger-guard",
                                            daemon=True)  # fmt: skip
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
        return self._ready

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self._ready and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._ready

    # -- the gateway's question ----------------------------------------------------------

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
    ) -> Decision:
        """May this request spend now? ``est_cost`` is in nano-USD."""
        if self.guardrails is not None:
            denied = self.guardrails.check(
                route, attempt, est_cost, input_tokens, output_tokens, tool_steps
            )
            if denied is not None:
                return denied
        if self._mode is not None:
            return self._mode
        tenant = self._tenant.get(tenant_id)
        scoped = self._feature.get((tenant_id, feature)) if feature is not None else None
        if tenant is None and scoped is None:
            return ALLOW
        for entry in (tenant, scoped):
            if entry is not None and not entry[1].allowed:
                return entry[1]
        if est_cost is not None:
            for entry in (tenant, scoped):
                if entry is not None and entry[0].spend_nusd + est_cost > entry[0].limit_nusd:
                    sig = entry[0]
                    return Decision(False, "block", "estimated cost would exceed the budget "
                                    f"({format_usd(sig.spend_nusd + est_cost)} of "
                                    f"{format_usd(sig.limit_nusd)})", sig.scope)  # fmt: skip
        return (scoped or tenant)[1]  # type: ignore[index]

    def state(self) -> dict[str, Signal]:
        """Current non-allow signal per scope (a copy)."""
        out = {s.scope: s for s, _ in self._tenant.values()}
        out.update({s.scope: s for s, _ in self._feature.values()})
        return out

    # -- the consumer thread -------------------------------------------------------------

    @property
    def replayed_signals(self) -> int:
        """Signals ignored because they were not newer than the one held for their scope."""
        return self.freshness.replayed

    def apply(self, key: bytes | None, value: bytes | None,
              headers: signing.Headers = None) -> None:  # fmt: skip
        """Apply one record of the signals topic (the consumer thread calls this)."""
        verdict = signing.check(self.signing_key, self.topic, key, value, headers)
        if not verdict.ok:
            self.unauthorized_signals += 1
            log.warning("ignoring a signal for %r without a valid signature", key)
            return
        if value is None:  # a tombstone: the scope no longer has a signal
            scope = key.decode(errors="replace") if key else ""
            parts = _scope_parts(scope)
            fresh = verdict.issued_ms is None or self.freshness.accept(scope, verdict.issued_ms)
            if parts is not None and fresh:
                self._forget(*parts)
            return
        try:
            signal = Signal.model_validate_json(value)
        except ValidationError as exc:
            self.invalid_signals += 1
            log.warning("ignoring an invalid signal: %s", exc.errors()[0]["msg"])
            return
        if not self.freshness.accept(signal.scope, int(signal.issued_at.timestamp() * 1000)):
            return
        self.signals_seen += 1
        if signal.state == "allow":
            self._forget(signal.tenant_id, signal.feature)
        elif signal.feature is None:
            self._tenant[signal.tenant_id] = (signal, _decision_for(signal))
        else:
            self._feature[(signal.tenant_id, signal.feature)] = (signal, _decision_for(signal))

    def _forget(self, tenant_id: str, feature: str | None) -> None:
        if feature is None:
            self._tenant.pop(tenant_id, None)
        else:
            self._feature.pop((tenant_id, feature), None)

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            if self._lost_since is None:
                self._lost_since = time.monotonic()

    def _run(self) -> None:
        from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

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
                            self._lost_since = None
                            if not partitions:
                                partitions = sorted(found.partitions)
                                consumer.assign([TopicPartition(self.topic, p, -2)
                                                 for p in partitions])  # fmt: skip
                    except KafkaException:
                        if self._lost_since is None:
                            self._lost_since = now
                if partitions:
                    for msg in consumer.consume(num_messages=500, timeout=0.05):
                        err = msg.error()
                        if err is None:
                            self.apply(msg.key(), msg.value(), msg.headers())
                        elif err.code() == KafkaError._PARTITION_EOF:
                            partitions_at_eof.add(msg.partition() or 0)
                    if not self._ready and partitions_at_eof >= set(partitions):
                        self._ready = True
                else:
                    self._stop.wait(0.05)
                self._mode = self._health()
        finally:
            consumer.close()

    def _health(self) -> Decision | None:
        if not self._ready:
            return self._not_ready
        lost = self._lost_since
        if lost is not None and time.monotonic() - lost > self.stale_after_s:
            return self._stale
        return None

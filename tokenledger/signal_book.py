"""The budget decision every gateway makes, whoever feeds it the signals.

A ``SignalBook`` holds the current signal of every scope (from the compacted signals topic)
and answers "may tenant T (feature F) spend now?" from memory: dictionary lookups and
precomputed decisions. Its feeder is either a ``BudgetGuard``'s consumer thread (Python
gateways) or the edge service's agent (``tokenledger serve``, for any gateway over HTTP); both
call ``apply`` per record and report the feed's health with ``caught_up`` / ``lost`` /
``regained``, so both answer the same question the same way.

Until the feeder has caught up with the topic, or after it has lost the broker for longer
than ``stale_after_s``, the book's knowledge may be wrong: ``on_unavailable`` chooses whether
it then fails open (allow) or closed (deny), and the decision says so (``degraded``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from tokenledger import signing
from tokenledger.contract.call_control import (
    BREAKER_SIGNAL,
    SIGNAL_KINDS,
    BreakerSignal,
    RetryBudgetSignal,
    kind_of,
)
from tokenledger.contract.common import format_usd
from tokenledger.contract.messages import Signal
from tokenledger.contract.names import error_message, parse_scope
from tokenledger.decision import ALLOW, Decision
from tokenledger.freshness import Freshness
from tokenledger.gates import Gates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Guardrails:
    """Per-request limits a gateway checks before any budget: input and output tokens per
    route, estimated cost per request (nano-USD), retries, tool steps. Route maps take the
    key ``"*"`` as the default for any route; a limit left out is not checked::

        rails = Guardrails(max_output_tokens={"*": 4000, "rag": 800}, max_retries=2)
        guard = BudgetGuard(guardrails=rails).start()
        guard.check("acme", route="rag", output_tokens=1200).reason
        # "output tokens 1200 exceed the limit of 800 for route 'rag'"

    Immutable, so shared freely between threads. ``check()`` never raises: a limit exceeded
    is a denial (state ``guardrail``) with its reason, every limit held is None.
    """

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
            return _deny(
                f"estimated cost {format_usd(est_cost, exact=True)} exceeds the "
                f"per-request limit {format_usd(cap, exact=True)}"
            )
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


class SignalBook:
    """The verified signal of every scope, and the decision each gives (module docstring)."""

    def __init__(
        self,
        *,
        topic: str,
        guardrails: Guardrails | None = None,
        on_unavailable: Literal["open", "closed"] = "open",
        stale_after_s: float = 30.0,
        public_keys: signing.PublicKeyring | Literal["env"] | None = "env",
    ) -> None:
        """``public_keys``: only signals signed by one of their private keys count; default:
        TOKENLEDGER_PUBLIC_KEYS when set (tokenledger.signing); None accepts unsigned ones.
        Public keys only: the book can verify, never sign. Per scope only a signal newer
        than the one held counts (a replay is ignored)."""
        if on_unavailable not in ("open", "closed"):
            raise ValueError("on_unavailable is 'open' or 'closed'")
        self.topic = topic
        self.guardrails = guardrails
        self.on_unavailable = on_unavailable
        self.stale_after_s = stale_after_s
        self._tenant: dict[str, tuple[Signal, Decision]] = {}
        self._feature: dict[tuple[str, str], tuple[Signal, Decision]] = {}
        allowed = on_unavailable == "open"
        self._not_ready = Decision(
            allowed,
            "unavailable",
            f"the signals topic has not been read to its end yet; failing {on_unavailable}",
            None,
            True,
        )
        self._reading = self._not_ready
        self._missing = Decision(
            allowed,
            "unavailable",
            f"the signals topic {topic!r} does not exist; failing {on_unavailable}",
            None,
            True,
        )
        self._stale = Decision(
            allowed,
            "unavailable",
            f"lost the broker for over {stale_after_s:g}s; failing {on_unavailable}",
            None,
            True,
        )
        self._mode: Decision | None = self._not_ready  # None means healthy
        self._ready = False
        self._lost_since: float | None = None
        self.signals_seen = 0
        self.invalid_signals = 0
        self.unauthorized_signals = 0
        self.refusals: Counter[str] = Counter()
        """Refused signals by reason (unsigned, another key, the old HMAC key, ...)."""
        self.public_keys = signing.reader_ring(public_keys)
        self.freshness = Freshness("signal")
        self.gates = Gates()
        """Retry-budget blocks and open circuit breakers (tokenledger.gates)."""

    # -- the feed's health -------------------------------------------------------------

    def ready(self) -> bool:
        """Has the feeder read the signals topic up to its end at least once?"""
        return self._ready

    def not_ready_reason(self) -> str | None:
        """Why the book is not ready (what every check says meanwhile); None once it is."""
        return None if self._ready else self._not_ready.reason

    def topic_missing(self, missing: bool = True) -> None:
        """The feeder found the signals topic missing (or, ``missing=False``, there): until
        it has read it, checks and ``not_ready_reason`` say which."""
        self._not_ready = self._missing if missing else self._reading
        self.refresh()

    def degraded(self) -> Decision | None:
        """The decision every check gets while the feed is not healthy; None when it is."""
        return self._mode

    def caught_up(self) -> None:
        self._ready = True
        self.refresh()

    def lost(self, now: float | None = None) -> None:
        """The feeder cannot reach the broker (first call counts from ``now``)."""
        if self._lost_since is None:
            self._lost_since = time.monotonic() if now is None else now
        self.refresh()

    def regained(self) -> None:
        self._lost_since = None
        self.refresh()

    def refresh(self) -> None:
        """Recompute the degraded mode (staleness grows with time: the feeder calls this
        at least once a second)."""
        if not self._ready:
            self._mode = self._not_ready
        elif (
            lost := self._lost_since
        ) is not None and time.monotonic() - lost > self.stale_after_s:
            self._mode = self._stale
        else:
            self._mode = None

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
        provider: str | None = None,
        model: str | None = None,
    ) -> Decision:
        """May this request spend now? ``est_cost`` is in nano-USD. With ``attempt`` > 1 the
        route's retry budget is asked too; with ``provider`` and ``model``, its breaker."""
        if self.guardrails is not None:
            denied = self.guardrails.check(
                route, attempt, est_cost, input_tokens, output_tokens, tool_steps
            )
            if denied is not None:
                return denied
        if self._mode is not None:
            return self._mode
        gated = self.gates.check(tenant_id, route, attempt, provider, model) if self.gates else None
        if gated is not None and not gated.allowed:
            return gated
        tenant = self._tenant.get(tenant_id)
        scoped = self._feature.get((tenant_id, feature)) if feature is not None else None
        if tenant is None and scoped is None:
            return gated or ALLOW
        for entry in (tenant, scoped):
            if entry is not None and not entry[1].allowed:
                return entry[1]
        if est_cost is not None:
            for entry in (tenant, scoped):
                if entry is not None and entry[0].spend_nusd + est_cost > entry[0].limit_nusd:
                    sig = entry[0]
                    return Decision(
                        False,
                        "block",
                        "estimated cost would exceed the budget "
                        f"({format_usd(sig.spend_nusd + est_cost)} of "
                        f"{format_usd(sig.limit_nusd)})",
                        sig.scope,
                    )
        return (scoped or tenant)[1]  # type: ignore[index]

    def state(self) -> dict[str, Signal]:
        """Current non-allow signal per scope (a copy)."""
        out = {s.scope: s for s, _ in self._tenant.values()}
        out.update({s.scope: s for s, _ in self._feature.values()})
        return out

    # -- the feed ------------------------------------------------------------------------

    @property
    def replayed_signals(self) -> int:
        """Signals ignored because they were not newer than the one held for their scope."""
        return self.freshness.replayed

    def apply(
        self, key: bytes | None, value: bytes | None, headers: signing.Headers = None
    ) -> None:
        """Apply one record of the signals topic."""
        verdict = signing.check(self.public_keys, self.topic, key, value, headers)
        if not verdict.ok:
            self.unauthorized_signals += 1
            self.refusals[verdict.reason] += 1
            log.warning("ignoring a signal for %r: %s", key, verdict.reason)
            return
        if value is None:  # a tombstone: the scope no longer has a signal
            scope = key.decode(errors="replace") if key else ""
            parts = parse_scope(scope)
            fresh = verdict.issued_ms is None or self.freshness.accept(scope, verdict.issued_ms)
            if parts is not None and fresh:
                self._forget(*parts)
            return
        kind = kind_of(value)
        if kind in SIGNAL_KINDS:
            self._apply_gate(kind, value)
            return
        try:
            signal = Signal.model_validate_json(value)
        except ValidationError as exc:
            self.invalid_signals += 1
            log.warning("ignoring an invalid signal: %s", error_message(exc.errors()[0]))
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

    def _apply_gate(self, kind: str | None, value: bytes) -> None:
        """A retry-budget or breaker signal (its kind says which)."""
        signal: RetryBudgetSignal | BreakerSignal
        try:
            if kind == BREAKER_SIGNAL:
                signal = BreakerSignal.model_validate_json(value)
            else:
                signal = RetryBudgetSignal.model_validate_json(value)
        except ValidationError as exc:
            self.invalid_signals += 1
            log.warning("ignoring an invalid signal: %s", exc.errors()[0]["msg"])
            return
        if self.freshness.accept(signal.scope, int(signal.issued_at.timestamp() * 1000)):
            self.signals_seen += 1
            self.gates.apply(signal)

    def _forget(self, tenant_id: str, feature: str | None) -> None:
        if feature is None:
            self._tenant.pop(tenant_id, None)
        else:
            self._feature.pop((tenant_id, feature), None)

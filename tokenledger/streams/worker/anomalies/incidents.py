"""One alert per incident: firing once, resolved after quiet minutes judged against the
expectation frozen at firing, then a cooldown. Everything in an alert comes from event time:
it starts at the change point behind the observation that fired (onset.py), it is issued
at the end of the minute judged, and its fingerprint hashes the detector, the scope and
that minute, so every worker, batch size and replay gives the same alert."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tokenledger.contract.messages import Alert
from tokenledger.streams.worker.anomalies.buckets import MINUTE_MS, human_scope
from tokenledger.streams.worker.anomalies.config import DetectorConfig
from tokenledger.streams.worker.anomalies.observation import SPEND_UNIT, Observation
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.state_keys import INCIDENT, IncidentKey, parse_dim
from tokenledger.streams.worker.state_values import Cooling, Firing


@dataclass
class Incident:
    start_ms: int
    expected: int
    fingerprint: str
    severity: str
    summary: str
    quiet: int = 0

    def mark(self) -> Firing:
        """The incident as its state key holds it (state_keys.INCIDENT)."""
        return Firing(self.start_ms, self.expected, self.quiet, self.fingerprint, self.severity)


def fingerprint(detector: str, scope: str, start_ms: int) -> str:
    return hashlib.sha256(f"{detector}\x00{scope}\x00{start_ms}".encode()).hexdigest()[:32]


class Incidents:
    """The firing and cooling incidents of one partition, persisted per detector and scope
    (state_keys.INCIDENT); ``judge(detector, observed, expected)`` says whether an
    observation is anomalous."""

    def __init__(
        self, state: State, config: DetectorConfig, judge: Callable[[str, int, int], bool]
    ) -> None:
        self.state = state
        self.cfg = config
        self.judge = judge
        self.incidents: dict[tuple[str, str], Incident] = {}
        self.cooling: dict[tuple[str, str], int] = {}
        for key, value in state.items(INCIDENT.prefix):
            detector, scope = INCIDENT.decode_key(key)
            mark = INCIDENT.decode_value(value)
            if isinstance(mark, Firing):
                self.incidents[(detector, scope)] = Incident(
                    mark.start_ms, mark.expected, mark.fingerprint, mark.severity, "", mark.quiet
                )
            else:
                self.cooling[(detector, scope)] = mark.until_ms

    def firing(self, detector: str, scope: str) -> bool:
        return (detector, scope) in self.incidents

    def scopes(self) -> set[str]:
        """Every scope with a firing incident (evaluated even in a minute without traffic)."""
        return {scope for _, scope in self.incidents}

    def step(self, detector: str, scope: str, obs: Observation | None, minute: int) -> list[Alert]:
        """Judge ``minute`` of an incident's scope: fire, hold, or resolve."""
        key = (detector, scope)
        incident = self.incidents.get(key)
        if incident is None:
            if obs is None or not obs.volume_ok:
                return []
            if not self.judge(detector, obs.observed, obs.expected):
                return []
            if detector == "spend_rate" and self._tenant_spend_firing(scope, minute):
                return []  # one spend incident per tenant: its tenant or feature scope
            until = self.cooling.get(key)
            if until is not None:
                if minute < until:
                    return []
                del self.cooling[key]
            severity = "critical" if detector in ("spend_rate", "budget_burn") else "warning"
            began = obs.start_ms if obs.onset is None else obs.onset(self._since(until))
            incident = Incident(
                began, obs.expected, fingerprint(detector, scope, minute), severity, obs.summary()
            )
            self.incidents[key] = incident
            self._save(detector, scope, incident.mark())
            return [self._alert(detector, scope, incident, obs, "firing", minute)]
        if obs is None and detector != "budget_burn":
            return []  # no evidence either way (an idle route): the incident holds
        if detector == "budget_burn":  # against the current limit, with a lower band
            bad = (
                obs is not None
                and obs.volume_ok
                and obs.observed * 100 >= obs.expected * self.cfg.burn_resolve_pct
            )
        else:  # against the expectation frozen when it fired
            bad = obs is not None and self.judge(detector, obs.observed, incident.expected)
        incident.quiet = 0 if bad else incident.quiet + 1
        if incident.quiet < self.cfg.resolve_after:
            self._save(detector, scope, incident.mark())
            return []
        del self.incidents[key]
        until = minute + MINUTE_MS + self.cfg.cooldown_minutes * MINUTE_MS
        self.cooling[key] = until
        self._save(detector, scope, Cooling(until))
        last = obs or Observation(0, incident.expected, "", True, minute, minute + MINUTE_MS)
        text = (
            f"resolved: {detector} on {human_scope(scope)[0]} back to normal for "
            f"{self.cfg.resolve_after} minutes"
        )
        last = replace(last, summary=lambda: text)
        return [self._alert(detector, scope, incident, last, "resolved", minute, ends=True)]

    def _save(self, detector: str, scope: str, mark: Firing | Cooling) -> None:
        key = INCIDENT.encode_key(IncidentKey(detector, scope))
        self.state.put(key, INCIDENT.encode_value(mark))

    def _since(self, cooled_until: int | None) -> int:
        """How far back the change point of a new incident may lie: not before the end of
        the scope's previous incident (nor its cooldown's start)."""
        if cooled_until is None:
            return 0
        return cooled_until - self.cfg.cooldown_minutes * MINUTE_MS

    def _tenant_spend_firing(self, scope: str, minute: int) -> bool:
        """A spend incident of the tenant (any of its scopes) is firing or cooling down."""
        tenant = parse_dim(scope).tenant_id

        def mine(d: str, s: str) -> bool:
            return d == "spend_rate" and parse_dim(s).tenant_id == tenant

        return any(mine(d, s) for d, s in self.incidents) or any(
            mine(d, s) and minute < until for (d, s), until in self.cooling.items()
        )

    def _alert(
        self,
        detector: str,
        scope: str,
        incident: Incident,
        obs: Observation,
        status: str,
        minute: int,
        *,
        ends: bool = False,
    ) -> Alert:
        """The alert of ``incident``, issued at the end of ``minute`` (event time); with
        ``ends``, the incident ends there too."""
        where, tenant, feature = human_scope(scope)
        ends_ms = minute + MINUTE_MS if ends else None

        def at(ms: int) -> datetime:
            return datetime.fromtimestamp(ms / 1000, UTC)

        summary = obs.summary() or f"{detector} on {where}"
        return Alert.model_validate(
            {
                "fingerprint": incident.fingerprint,
                "detector": detector,
                "severity": incident.severity,
                "status": status,
                "scope": where,
                "tenant_id": tenant,
                "feature": feature,
                "summary": summary[:1000],
                "evidence": {
                    "observed": obs.observed,
                    "expected": obs.expected,
                    "unit": obs.unit or SPEND_UNIT,
                    "window_start": at(obs.start_ms),
                    "window_end": at(obs.end_ms),
                },
                "starts_at": at(incident.start_ms),
                "ends_at": at(ends_ms) if ends_ms is not None else None,
                "issued_at": at(minute + MINUTE_MS),
            }
        )

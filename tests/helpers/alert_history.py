"""A small fixed history for checking that alerts depend only on the events: four hours of
two tenants at about one call a minute, generated from a seed, with planted incidents (each
with the minute its change begins) and traps that must stay quiet. Small on purpose: a
worker in batches of one record replays it in well under a minute.

Incidents, all on ``drip`` (one call a minute on its route): a retry storm, a model switch
on the route, and later a runaway agent loop on a second feature. Traps on ``pause`` (one
call a minute too): an outage of 40 minutes, after which a backlog arrives ahead of its new
traffic (events of the last minutes, within the allowed lateness, and a few from long
before, beyond it), two calls retried twice, which are no storm, and one burst of six long
calls, which is no runaway. Events arrive up to two
seconds after their event time, so arrival order is not event-time order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tokenledger.contract.messages import Alert

MINUTES = 230
SEED = 2028
WARM_UP = timedelta(minutes=20)
"""Replays send the first part of the history, and wait for it, before the rest."""
PROVIDER = {"gpt-4.1-nano": "openai", "gpt-4.1-mini": "openai", "gpt-4.1": "openai"}


@dataclass(frozen=True)
class Planted:
    detector: str
    tenant_id: str
    scopes: frozenset[str]
    """The alert scopes that detect it (spend: the tenant or the feature it changes)."""
    change: datetime
    """The first minute of the change."""
    end: datetime


@dataclass(frozen=True)
class History:
    start: datetime
    events: list[dict[str, Any]]
    """Usage events (the JSON of tokenledger.contract.messages.UsageEvent), in arrival order."""
    planted: list[Planted]

    def at(self, minute: float) -> datetime:
        return self.start + timedelta(minutes=minute)

    def warmed_up(self) -> int:
        """How many events the warm-up is: those before the first one past WARM_UP."""
        end = self.start + WARM_UP
        return next(i for i, e in enumerate(self.events) if datetime.fromisoformat(e["ts"]) >= end)


class _Calls:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def call(
        self,
        tenant: str,
        feature: str,
        route: str,
        model: str,
        ts: datetime,
        input_tokens: int,
        output_tokens: int,
        *,
        over_budget: bool = False,
        attempt: int = 1,
        key: str = "",
    ) -> dict[str, Any]:
        self.n += 1
        return {
            "event_id": f"d{self.n:07d}",
            "request_id": key or f"dr{self.n}",
            "idempotency_key": key or f"dk{self.n}",
            "attempt": attempt,
            "ts": ts.isoformat(),
            "tenant_id": tenant,
            "user_scope": "",
            "service": f"{tenant}-app",
            "feature": feature,
            "route": route,
            "prompt_version": "p1",
            "model": model,
            "provider": PROVIDER[model],
            "environment": "prod",
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": 0,
            "latency_ms": 400,
            "success": True,
            "token_budget_violations": ["context"] if over_budget else [],
        }

    def retried(
        self, event: dict[str, Any], ts: datetime, times: int
    ) -> list[tuple[datetime, dict[str, Any]]]:
        """Later attempts of ``event`` (same idempotency key, new event ids)."""
        out = []
        for attempt in range(2, 2 + times):
            later = ts + timedelta(milliseconds=700 * attempt)
            self.n += 1
            out.append(
                (
                    later,
                    {
                        **event,
                        "event_id": f"d{self.n:07d}",
                        "attempt": attempt,
                        "ts": later.isoformat(),
                    },
                )
            )
        return out

    def second(self, minute: datetime) -> datetime:
        return minute + timedelta(
            seconds=self.rng.randint(1, 58), milliseconds=self.rng.randint(0, 999)
        )


def history(start: datetime, seed: int = SEED) -> History:
    """The history from ``start`` (a whole hour, so that hourly baselines fall alike on
    every run): events and what was planted."""
    c = _Calls(seed)
    rng = c.rng
    at = lambda m: start + timedelta(minutes=m)  # noqa: E731
    planted = [
        Planted("retry_storm", "drip", frozenset({"tenant/drip"}), at(25), at(45)),
        Planted(
            "model_mix", "drip", frozenset({"tenant/drip/route/classify"}), at(100), at(MINUTES)
        ),
        Planted(
            "spend_rate",
            "drip",
            frozenset({"tenant/drip", "tenant/drip/feature/agent"}),
            at(150),
            at(158),
        ),
    ]
    timed: list[tuple[datetime, dict[str, Any]]] = []  # (when it is sent, event)
    for m in range(MINUTES):
        minute = at(m)
        # one tagging call a minute: retried 1-3 times (60%) from 25 to 45; from 100 on a
        # model 20x the price of the usual one
        ts = c.second(minute)
        model = "gpt-4.1" if m >= 100 else "gpt-4.1-nano"
        event = c.call("drip", "tagging", "classify", model, ts, 450, 12)
        timed.append((ts, event))
        if 25 <= m < 45 and rng.random() < 0.6:
            timed.extend(c.retried(event, ts, rng.randint(1, 3)))
        for _ in range(10 if 150 <= m < 158 else 0):  # an agent loop: ten long calls a minute
            ts = c.second(minute)
            timed.append((ts, c.call("drip", "agent", "tools", "gpt-4.1", ts, 8000, 800)))
        timed.extend(_pause(c, minute, m, at))
    arrivals = [(ts + timedelta(milliseconds=rng.randint(0, 2000)), e) for ts, e in timed]
    arrivals.sort(key=lambda x: x[0])
    return History(start, [e for _, e in arrivals], planted)


def _pause(c: _Calls, minute: datetime, m: int, at: Any) -> list[tuple[datetime, dict[str, Any]]]:
    """One call a minute, silent from 60 to 100; at 100 a backlog arrives first: twelve
    calls of minutes 96-99 (within the allowed lateness) and three of minute 70 (beyond);
    the calls of minutes 130 and 133 are retried twice; six long calls at minute 140."""
    if 60 <= m < 100:
        return []
    out = []
    if m == 100:
        sent = minute + timedelta(milliseconds=500)
        for i in range(15):
            ts = c.second(at(96 + i % 4) if i < 12 else at(70))
            out.append(
                (
                    sent + timedelta(milliseconds=i),
                    c.call("pause", "report", "draft", "gpt-4.1-mini", ts, 1200, 200),
                )
            )
    ts = c.second(minute)
    event = c.call("pause", "report", "draft", "gpt-4.1-mini", ts, 1200, 200)
    out.append((ts, event))
    if m in (130, 133):
        out.extend(c.retried(event, ts, 2))
    for _ in range(6 if m == 140 else 0):  # a burst of long calls, once: no runaway
        ts = c.second(minute)
        out.append((ts, c.call("pause", "report", "draft", "gpt-4.1", ts, 20_000, 1000)))
    return out


AlertKey = tuple[str, str, str, str, datetime, datetime | None]


def keys(alerts: Iterable[Alert]) -> set[AlertKey]:
    """What must not depend on how the events were batched: (fingerprint, detector, scope,
    status, starts_at, ends_at) of every alert."""
    return {(a.fingerprint, a.detector, a.scope, a.status, a.starts_at, a.ends_at) for a in alerts}


def problems(h: History, alerts: list[Alert]) -> list[str]:
    """What is wrong with ``alerts`` for ``h``: a planted incident without exactly one firing
    alert of its detector on its scope, dated within 5 minutes of its change; an alert of
    nothing planted (a trap's); an incident that ended inside the history without a
    resolve within 15 minutes of its end."""
    out = []
    firing = [a for a in alerts if a.status == "firing"]
    resolved = {a.fingerprint: a for a in alerts if a.status == "resolved"}
    for p in h.planted:
        own = [a for a in firing if a.detector == p.detector and a.scope in p.scopes]
        if len(own) != 1:
            out.append(f"{p.detector} on {p.tenant_id}: {len(own)} firing alerts")
            continue
        off = own[0].starts_at - p.change
        if abs(off) > timedelta(minutes=5):
            out.append(f"{p.detector} on {p.tenant_id}: starts_at {off} from the change")
        ended = resolved.get(own[0].fingerprint)
        if p.end < h.at(MINUTES) and (
            ended is None
            or ended.ends_at is None
            or not p.end < ended.ends_at <= p.end + timedelta(minutes=15)
        ):
            out.append(f"{p.detector} on {p.tenant_id}: not resolved after its end")
    for a in firing:
        if not any(a.detector == p.detector and a.scope in p.scopes for p in h.planted):
            out.append(f"unplanned: {a.detector} on {a.scope} at {a.starts_at - h.start}")
    return out

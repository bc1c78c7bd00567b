"""A second, independent evaluation of the detectors: traffic written from scratch for
scoring only (its own tenants, load curves, model mixes and token distributions; nothing
shared with tokenledger/streams/demo/scenario.py), with labeled incidents and labeled traps.

Three UTC days. Day 0 is the detectors' warm-up (they learn yesterday's profile there);
incidents and traps happen on days 1 and 2, and only alerts issued from day 1 on are
scored. Incidents: a runaway agent loop, model switches on low-volume routes (about one
call a minute, and one every two minutes), a retry storm, prompt growth past a token
budget, a bulk job burning a daily budget. Traps that must stay quiet: organic growth over
hours, a two-hour outage followed by normal traffic (and a small backlog), a holiday-quiet
day followed by a normal one, and a huge batch job every night.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PROVIDER = {
    "gpt-4.1-nano": "openai",
    "gpt-4.1-mini": "openai",
    "gpt-4.1": "openai",
    "o4-mini": "openai",
    "claude-3-5-haiku-latest": "anthropic",
    "claude-opus-4-1": "anthropic",
    "gemini-2.0-flash": "google",
    "mistral-small-latest": "mistral",
}


@dataclass(frozen=True)
class Route:
    feature: str
    route: str
    mix: tuple[tuple[str, float], ...]  # model, share
    input_median: int
    input_spread: float  # lognormal sigma
    output_median: int
    share: float  # of the tenant's calls; 0 with ``per_minute``: a fixed low rate
    token_budget: int = 0  # input tokens; 0: none
    per_minute: float = 0.0
    cached_share: float = 0.0


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    calls_per_day: int
    curve: str  # office | flat | evening | night
    tz_hours: int
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class Label:
    kind: str
    tenant_id: str
    detector: str
    scopes: frozenset[str]
    start: datetime
    end: datetime
    trap: bool = False


@dataclass
class Holdout:
    start: datetime
    days: int
    tenants: list[Tenant]
    labels: list[Label] = field(default_factory=list)
    seed: int = 2027

    @property
    def scored_from(self) -> datetime:
        return self.start + timedelta(days=1)

    @property
    def scored_tenant_days(self) -> int:
        return len(self.tenants) * (self.days - 1)

    def at(self, day: int, hours: float) -> datetime:
        return self.start + timedelta(days=day, hours=hours)


def _curve(kind: str, local_hour: float) -> float:
    """Relative load by local hour (mean about 1 over a day)."""
    if kind == "office":
        return 0.25 + 2.6 * math.exp(-(((local_hour - 13.5) / 3.4) ** 2))
    if kind == "evening":
        return 0.35 + 2.9 * math.exp(-(((local_hour - 20.5) / 2.2) ** 2))
    if kind == "night":
        return 1.0 + 0.7 * math.cos((local_hour - 3) / 24 * 2 * math.pi)
    return 1.0


def tenants() -> list[Tenant]:
    nano, mini, big = "gpt-4.1-nano", "gpt-4.1-mini", "gpt-4.1"
    haiku, flash, small = "claude-3-5-haiku-latest", "gemini-2.0-flash", "mistral-small-latest"
    chat = Route(
        "assistant", "chat", ((mini, 0.7), (haiku, 0.3)), 1800, 0.6, 260, 0.6, cached_share=0.3
    )
    return [
        Tenant(
            "harbor",
            9000,
            "office",
            1,
            (chat, Route("agent", "tools", ((big, 1.0),), 5200, 0.4, 420, 0.4, token_budget=16000)),
        ),
        Tenant(
            "quill",
            4000,
            "flat",
            0,
            (
                Route("tagging", "classify", ((nano, 1.0),), 450, 0.3, 12, 0, per_minute=1.2),
                Route("writer", "draft", ((mini, 0.5), (small, 0.5)), 2400, 0.5, 700, 1.0),
            ),
        ),
        Tenant("orbit", 7000, "office", -5, (chat,)),
        Tenant(
            "lumen",
            5000,
            "evening",
            0,
            (
                Route("summarize", "digest", ((flash, 1.0),), 3000, 0.35, 350, 0.7, 8000),
                Route("search", "rerank", ((nano, 1.0),), 900, 0.4, 30, 0.3),
            ),
        ),
        Tenant("delta", 3000, "office", 8, (chat,)),
        Tenant(
            "fjord",
            2500,
            "night",
            2,
            (
                Route("labels", "classify", ((haiku, 1.0),), 380, 0.3, 8, 0, per_minute=0.5),
                Route("assistant", "chat", ((mini, 1.0),), 1600, 0.6, 240, 1.0),
            ),
        ),
        Tenant("sprout", 3000, "flat", 0, (chat,)),
        Tenant("tidal", 6000, "office", 0, (chat,)),
        Tenant("ember", 5000, "office", 1, (chat,)),
        Tenant(
            "vault",
            2000,
            "flat",
            0,
            (Route("reports", "batch", ((mini, 1.0),), 6000, 0.3, 900, 1.0),),
        ),
    ]


def holdout(days: int = 3) -> Holdout:
    start = datetime(2026, 10, 12, tzinfo=UTC)
    h = Holdout(start, days, tenants())
    tenant = lambda t: f"tenant/{t}"  # noqa: E731
    h.labels = [
        Label(
            "runaway",
            "harbor",
            "spend_rate",
            frozenset({tenant("harbor"), f"{tenant('harbor')}/feature/agent"}),
            h.at(1, 14),
            h.at(1, 14.4),
        ),
        Label(
            "model_switch",
            "quill",
            "model_mix",
            frozenset({f"{tenant('quill')}/route/classify"}),
            h.at(1, 10),
            h.at(days, 0),
        ),
        Label(
            "model_switch",
            "fjord",
            "model_mix",
            frozenset({f"{tenant('fjord')}/route/classify"}),
            h.at(2, 13),
            h.at(days, 0),
        ),
        Label(
            "retry_storm",
            "orbit",
            "retry_storm",
            frozenset({tenant("orbit")}),
            h.at(2, 14.5),
            h.at(2, 15.2),
        ),
        Label(
            "prompt_growth",
            "lumen",
            "context_growth",
            frozenset({f"{tenant('lumen')}/feature/summarize"}),
            h.at(1, 16),
            h.at(1, 19),
        ),
        Label(
            "budget_burn",
            "delta",
            "budget_burn",
            frozenset({tenant("delta")}),
            h.at(2, 3),
            h.at(days, 0),
        ),
        Label(
            "runaway",
            "fjord",
            "spend_rate",
            frozenset({tenant("fjord"), f"{tenant('fjord')}/feature/assistant"}),
            h.at(2, 20),
            h.at(2, 20.3),
        ),
        Label("organic_growth", "sprout", "", frozenset(), h.at(1, 6), h.at(days, 0), True),
        Label("outage", "tidal", "", frozenset(), h.at(1, 11), h.at(1, 15), True),
        Label("holiday", "ember", "", frozenset(), h.at(1, 0), h.at(3, 0), True),
        Label("nightly_batch", "vault", "", frozenset(), h.at(0, 1), h.at(days, 0), True),
    ]
    return h


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class _Maker:
    def __init__(self, h: Holdout) -> None:
        self.h = h
        self.rng = random.Random(h.seed)
        self.n = 0

    def call(
        self,
        tenant: Tenant,
        route: Route,
        ts: datetime,
        *,
        model: str | None = None,
        input_scale: float = 1.0,
        batch: bool = False,
    ) -> dict[str, Any]:
        rng = self.rng
        self.n += 1
        if model is None:
            pick, acc = rng.random(), 0.0
            model = route.mix[-1][0]
            for name, share in route.mix:
                acc += share
                if pick < acc:
                    model = name
                    break
        tokens = max(
            1, int(route.input_median * input_scale * math.exp(rng.gauss(0, route.input_spread)))
        )
        output = max(1, int(route.output_median * math.exp(rng.gauss(0, 0.5))))
        cached = int(tokens * route.cached_share * rng.random())
        over = route.token_budget and tokens > route.token_budget
        return {
            "event_id": f"h{self.n:09d}",
            "request_id": f"hr{self.n}",
            "idempotency_key": f"hk{self.n}",
            "attempt": 1,
            "ts": ts.isoformat(),
            "tenant_id": tenant.tenant_id,
            "user_scope": "",
            "service": f"{tenant.tenant_id}-app",
            "feature": route.feature,
            "route": route.route,
            "prompt_version": "p1",
            "model": model,
            "provider": PROVIDER[model],
            "environment": "prod",
            "input_tokens": tokens,
            "output_tokens": output,
            "cached_input_tokens": cached,
            "latency_ms": 300 + tokens // 20,
            "success": True,
            "batch": batch,
            "token_budget_violations": ["context"] if over else [],
        }


def _minutes(h: Holdout) -> Iterator[datetime]:
    t, end = h.start, h.start + timedelta(days=h.days)
    while t < end:
        yield t
        t += timedelta(minutes=1)


def _tenant_events(
    h: Holdout, maker: _Maker, tenant: Tenant
) -> Iterator[tuple[datetime, dict[str, Any]]]:
    rng = maker.rng
    labels = [x for x in h.labels if x.tenant_id == tenant.tenant_id]
    for minute in _minutes(h):
        local = (minute.hour + minute.minute / 60 + tenant.tz_hours) % 24
        rate = tenant.calls_per_day / 1440 * _curve(tenant.curve, local)
        rate *= _volume_factor(labels, minute)
        calls: list[tuple[datetime, dict[str, Any]]] = []
        for route in tenant.routes:
            lam = route.per_minute if route.per_minute else rate * route.share
            for _ in range(_poisson(rng, lam if rate > 0 else 0.0)):
                ts = minute + timedelta(seconds=rng.random() * 60)
                calls.append((ts, _shaped(maker, labels, tenant, route, ts)))
        calls.extend(_extra_calls(h, maker, labels, tenant, minute))
        for ts, event in sorted(calls, key=lambda c: c[0]):
            yield ts, event
            yield from _retries(maker, labels, event, ts)


def _active(labels: list[Label], kind: str, at: datetime) -> bool:
    return any(x.kind == kind and x.start <= at < x.end for x in labels)


def _volume_factor(labels: list[Label], minute: datetime) -> float:
    factor = 1.0
    for x in labels:
        if x.kind == "organic_growth" and minute >= x.start:
            factor *= 1 + min(1.0, (minute - x.start) / timedelta(hours=8))
        if x.kind == "outage" and x.start <= minute < x.start + timedelta(hours=2):
            factor = 0.0
        if x.kind == "outage" and x.start + timedelta(hours=2) <= minute < x.start + timedelta(
            hours=2, minutes=15
        ):
            factor *= 1.1  # a small backlog after the outage
        if x.kind == "holiday" and x.start <= minute < x.start + timedelta(days=1):
            factor *= 0.15
    return factor


def _shaped(
    maker: _Maker, labels: list[Label], tenant: Tenant, route: Route, ts: datetime
) -> dict[str, Any]:
    if route.route == "classify" and _active(labels, "model_switch", ts):
        return maker.call(
            tenant, route, ts, model="gpt-4.1" if tenant.tenant_id == "quill" else "claude-opus-4-1"
        )
    if route.feature == "summarize" and _active(labels, "prompt_growth", ts):
        return maker.call(tenant, route, ts, input_scale=2.8)
    return maker.call(tenant, route, ts)


def _extra_calls(
    h: Holdout, maker: _Maker, labels: list[Label], tenant: Tenant, minute: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    rng, out = maker.rng, []
    extra: list[tuple[Route, float, bool]] = []
    for x in labels:
        if x.kind == "runaway" and x.start <= minute < x.end:  # an agent loop
            route = next(
                r
                for r in tenant.routes
                if f"tenant/{tenant.tenant_id}/feature/{r.feature}" in x.scopes
            )
            extra.append((route, 45.0, False))
    if _active(labels, "budget_burn", minute):  # a bulk job
        extra.append((tenant.routes[0], tenant.calls_per_day / 1440 * 2.2, False))
    if _active(labels, "nightly_batch", minute) and minute.hour == 1 and minute.minute < 40:
        extra.append((tenant.routes[0], 150.0, True))
    for route, lam, batch in extra:
        for _ in range(_poisson(rng, lam)):
            ts = minute + timedelta(seconds=rng.random() * 60)
            out.append((ts, maker.call(tenant, route, ts, batch=batch)))
    return out


def _retries(
    maker: _Maker, labels: list[Label], event: dict[str, Any], ts: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    if not _active(labels, "retry_storm", ts) or maker.rng.random() >= 0.55:
        return []
    out = []
    for attempt in range(2, 2 + maker.rng.randint(1, 3)):
        maker.n += 1
        later = ts + timedelta(milliseconds=attempt * 700)
        out.append(
            (
                later,
                {
                    **event,
                    "event_id": f"h{maker.n:09d}",
                    "attempt": attempt,
                    "ts": later.isoformat(),
                },
            )
        )
    return out


def events(h: Holdout) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """Every usage event in event-time order (the JSON of tokenledger.contract.messages.UsageEvent)."""
    maker = _Maker(h)
    streams = [sorted(_tenant_events(h, maker, t), key=lambda e: e[0]) for t in h.tenants]
    yield from heapq.merge(*streams, key=lambda e: e[0])

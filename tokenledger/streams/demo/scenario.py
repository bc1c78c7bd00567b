"""Synthetic LLM traffic for many tenants over simulated days, with labeled incidents.

Each tenant has features (a service, a route, a model, token sizes, a token budget) and a
daily load curve peaking at its own business hour, day-to-day and ten-minute noise, exact
and semantic cache hits, client timeouts that retry, nightly batch jobs, and a heavy tail of
long prompts. Incidents are injected on top and labeled, so detectors can be scored:

- ``runaway``: an agent loop calling a large model with a growing context, once a second;
- ``retry_storm``: a share of calls time out and are retried one to three times;
- ``model_switch``: a route moves to an expensive model;
- ``prompt_regression``: a new prompt version grows the context past its token budget;
- ``budget_burn``: a bulk job that spends the tenant's daily budget by noon.

``usage_events`` yields ``(ts, event dict)`` in event-time order; the dicts are the JSON of
``tokenledger.contract.messages.UsageEvent``. Everything is seeded: the same scenario gives the same events.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tokenledger.contract.days import start_of_day
from tokenledger.contract.price_book import CallContext, PriceBook
from tokenledger.contract.pricing import TokenCounts

IncidentKind = Literal["runaway", "retry_storm", "model_switch", "prompt_regression", "budget_burn"]
PROVIDER = {
    "gpt-4.1-nano": "openai",
    "gpt-4o-mini": "openai",
    "gpt-4.1-mini": "openai",
    "gpt-4o": "openai",
    "o3": "openai",
    "claude-haiku-4-5": "anthropic",
    "claude-sonnet-4-5": "anthropic",
    "claude-opus-4-1": "anthropic",
    "gemini-2.5-flash": "google",
}
EXPENSIVE = "claude-opus-4-1"
SWITCHED_ROUTE = "rag"
"""A model_switch incident moves this route to EXPENSIVE."""


@dataclass(frozen=True)
class Feature:
    name: str
    service: str
    route: str
    model: str
    input_tokens: int  # median
    output_tokens: int  # median
    weight: float
    token_budget: int
    batch: bool = False


FEATURES: tuple[Feature, ...] = (
    Feature("ticket-triage", "support-api", "classify", "gpt-4.1-nano", 600, 20, 0.40, 2000),
    Feature("kb-answer", "support-api", "rag", "gpt-4.1-mini", 2500, 300, 0.35, 6000),
    Feature(
        "contract-review", "legal-api", "reasoning", "claude-sonnet-4-5", 6000, 900, 0.10, 16000
    ),
    Feature("chat", "assistant-api", "chat", "gpt-4o-mini", 1200, 250, 0.15, 4000),
)
RUNAWAY_LOOP = Feature(
    "research-agent", "agents", "reasoning", "claude-sonnet-4-5", 8000, 1200, 0, 32000
)
"""A runaway incident is this agent loop, re-sending a growing transcript about once a second."""
NIGHTLY = Feature(
    "nightly-digest", "batch-jobs", "summarize", "gpt-4.1-mini", 4000, 500, 0.0, 12000, batch=True
)


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    requests_per_day: int
    peak_hour_utc: float
    features: tuple[Feature, ...] = FEATURES


@dataclass(frozen=True)
class Incident:
    kind: IncidentKind
    tenant_id: str
    start: datetime
    end: datetime


@dataclass
class Scenario:
    tenants: list[Tenant]
    start: datetime
    days: int
    incidents: list[Incident] = field(default_factory=list)
    seed: int = 7
    cache_exact: float = 0.06
    cache_semantic: float = 0.04
    timeout_retry: float = 0.015
    violation_rate: float = 0.01
    batch_jobs_per_night: int = 200
    length: timedelta | None = None
    """Shorter than ``days`` days (e.g. the last hour and a half before now)."""

    @property
    def end(self) -> datetime:
        return self.start + (self.length or timedelta(days=self.days))

    @property
    def tenant_days(self) -> int:
        return len(self.tenants) * self.days


def default_scenario(
    *, tenants: int = 16, days: int = 3, seed: int = 7, start: datetime | None = None
) -> Scenario:
    """``tenants`` tenants from 2,000 to 20,000 requests a day over ``days`` days, with two
    incidents of each kind (one of each when fewer than 10 tenants) from the second day on."""
    rng = random.Random(seed)
    if start is None:
        start = start_of_day(datetime.now(UTC)) - timedelta(days=days)
    people = [
        Tenant(
            f"tenant-{i:02d}",
            int(2000 * 10 ** (i / max(tenants - 1, 1))),
            rng.choice([8.0, 10.0, 13.0, 15.0, 17.0]),
        )
        for i in range(tenants)
    ]
    kinds: list[IncidentKind] = [
        "runaway",
        "retry_storm",
        "model_switch",
        "prompt_regression",
        "budget_burn",
    ]
    per_kind = 2 if tenants >= 10 else 1
    incidents: list[Incident] = []
    order = list(range(tenants))
    rng.shuffle(order)
    for n in range(per_kind * len(kinds)):
        if n >= tenants or days < 2:
            break
        kind = kinds[n % len(kinds)]
        tenant = people[order[n]]
        day = start + timedelta(days=1 + n % (days - 1))
        incidents.append(_incident(kind, tenant, day, rng))
    return Scenario(people, start, days, incidents, seed)


def _incident(kind: IncidentKind, tenant: Tenant, day: datetime, rng: random.Random) -> Incident:
    if kind == "budget_burn":
        begin = day + timedelta(hours=5)
        return Incident(kind, tenant.tenant_id, begin, day + timedelta(hours=12))
    hour = tenant.peak_hour_utc + rng.uniform(-3, 3)
    begin = day + timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))
    length = {"runaway": 40, "retry_storm": 30, "model_switch": 90, "prompt_regression": 120}[kind]
    return Incident(kind, tenant.tenant_id, begin, begin + timedelta(minutes=length))


def load_factor(hour_utc: float, peak_hour_utc: float) -> float:
    """Relative load at ``hour_utc`` (mean 1 over a day): a business-day bump on a floor."""
    distance = (hour_utc - peak_hour_utc + 12) % 24 - 12
    return (0.15 + 0.85 * math.exp(-((distance / 4) ** 2))) / _LOAD_MEAN


_LOAD_MEAN = 0.15 + 0.85 * 4 * math.sqrt(math.pi) / 24  # the bump's mean over 24 hours


class _Sampler:
    """Draws the calls of one tenant."""

    def __init__(self, scenario: Scenario, tenant: Tenant, seed: int) -> None:
        self.s = scenario
        self.t = tenant
        self.rng = random.Random(seed)
        self.weights = [f.weight for f in tenant.features]
        self.n = 0
        self.incidents = [i for i in scenario.incidents if i.tenant_id == tenant.tenant_id]

    def _id(self) -> str:
        self.n += 1
        return f"{self.t.tenant_id}-{self.s.seed}-{self.n}"

    def _active(self, kind: str, ts: datetime) -> bool:
        return any(i.kind == kind and i.start <= ts < i.end for i in self.incidents)

    def tokens(self, median: int, sigma: float = 0.6) -> int:
        return max(1, int(median * math.exp(self.rng.gauss(0, sigma))))

    def call(
        self,
        ts: datetime,
        feature: Feature,
        *,
        model: str | None = None,
        input_tokens: int | None = None,
    ) -> list[tuple[datetime, dict[str, Any]]]:
        """One logical request: its usage events (attempts that timed out, then the answer)."""
        rng = self.rng
        model = model or feature.model
        if feature.route == SWITCHED_ROUTE and self._active("model_switch", ts):
            model = EXPENSIVE
        prompt_version = "v1"
        inp = input_tokens or self.tokens(feature.input_tokens)
        if rng.random() < 0.01:  # a heavy tail: somebody pasted a book
            inp = min(inp * 20, 200_000)  # up to a large model's context window
        violations: tuple[str, ...] = ()
        if self._active("prompt_regression", ts) and feature.name == self.t.features[0].name:
            prompt_version = "v2"
            inp = int(inp * 3)
            if rng.random() < 0.6:
                violations = ("retrieved_docs",)
        elif rng.random() < self.s.violation_rate:
            violations = ("history",)
        out = self.tokens(feature.output_tokens, 0.5)
        cache = "none"
        roll = rng.random()
        if not feature.batch and roll < self.s.cache_exact:
            cache = "exact"
        elif not feature.batch and roll < self.s.cache_exact + self.s.cache_semantic:
            cache = "semantic"
        request = self._id()
        retries = 0
        if cache == "none":
            if rng.random() < self.s.timeout_retry:
                retries = 1
            if self._active("retry_storm", ts) and rng.random() < 0.45:
                retries = rng.randint(1, 3)
        common = {
            "request_id": request,
            "idempotency_key": request,
            "tenant_id": self.t.tenant_id,
            "service": feature.service,
            "feature": feature.name,
            "route": feature.route,
            "prompt_version": prompt_version,
            "model": model,
            "provider": PROVIDER[model],
            "batch": feature.batch,
            "task_id": request,
        }
        events: list[tuple[datetime, dict[str, Any]]] = []
        at = ts
        for attempt in range(1, retries + 2):
            last = attempt == retries + 1
            latency = int(300 + out * 15 * math.exp(rng.gauss(0, 0.3))) if last else 30_000
            if cache != "none":
                latency = 40
            trimmed = inp // 10 if violations and last else 0
            event = {
                **common,
                "event_id": self._id(),
                "attempt": attempt,
                "ts": at.isoformat().replace("+00:00", "Z"),
                "input_tokens": inp,
                "output_tokens": out if last else 0,
                "cached_input_tokens": inp // 2 if cache == "none" and rng.random() < 0.3 else 0,
                "cache": cache,
                "latency_ms": latency,
                "success": last,
                "error": None if last else "client timeout after 30s",
                "estimated": not last,
                "token_budget_violations": list(violations),
                "context_trimmed_tokens": trimmed,
            }
            events.append((at, event))
            at = at + timedelta(milliseconds=latency + rng.randrange(500))
        return events


def _tenant_stream(
    scenario: Scenario, tenant: Tenant, index: int
) -> Iterator[tuple[datetime, dict[str, Any]]]:
    sampler = _Sampler(scenario, tenant, scenario.seed * 1000 + index)
    rng = sampler.rng
    pending: list[tuple[datetime, int, dict[str, Any]]] = []
    seq = 0
    mean_rate = tenant.requests_per_day / 86_400
    day_factor = 1.0
    block_factor = 1.0
    block = -1
    day = -1
    t = scenario.start
    end = scenario.end

    def push(items: list[tuple[datetime, dict[str, Any]]]) -> None:
        nonlocal seq
        for at, event in items:
            seq += 1
            heapq.heappush(pending, (at, seq, event))

    # Background: normal calls (thinned Poisson process against the peak rate).
    peak = mean_rate * 4.2  # above the largest load x day x ten-minute factor
    while t < end:
        t = t + timedelta(seconds=rng.expovariate(peak))
        since = (t - scenario.start).total_seconds()
        if int(since // 86_400) != day:
            day = int(since // 86_400)
            day_factor = rng.uniform(0.85, 1.15)
        if int(since // 600) != block:
            block = int(since // 600)
            block_factor = math.exp(rng.gauss(0, 0.12))
        hour = t.hour + t.minute / 60 + t.second / 3600
        rate = mean_rate * load_factor(hour, tenant.peak_hour_utc) * day_factor * block_factor
        if rng.random() * peak < rate and t < end:
            feature = rng.choices(tenant.features, sampler.weights)[0]
            push(sampler.call(t, feature))
        while pending and pending[0][0] <= t:
            at, _, event = heapq.heappop(pending)
            if at < end:
                yield at, event
    while pending:
        at, _, event = heapq.heappop(pending)
        if at < end:
            yield at, event


def _extra_stream(
    scenario: Scenario, tenant: Tenant, index: int
) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """Nightly batch jobs and the incidents that add calls (runaway loops, bulk jobs)."""
    sampler = _Sampler(scenario, tenant, scenario.seed * 7919 + index)
    sampler.n = 10_000_000
    rng = sampler.rng
    calls: list[tuple[datetime, dict[str, Any]]] = []
    for d in range(scenario.days):
        night = scenario.start + timedelta(days=d, hours=2)
        for _ in range(scenario.batch_jobs_per_night * tenant.requests_per_day // 10_000):
            calls.extend(sampler.call(night + timedelta(seconds=rng.uniform(0, 3600)), NIGHTLY))
    loop = RUNAWAY_LOOP
    for incident in sampler.incidents:
        t = incident.start
        if incident.kind == "runaway":
            context = 8000
            while t < incident.end:
                calls.extend(sampler.call(t, loop, input_tokens=context))
                context = min(context + 100, 128_000)  # each turn adds to the transcript
                t += timedelta(seconds=rng.uniform(0.7, 1.3))
        elif incident.kind == "budget_burn":
            bulk_rate = 8 * tenant.requests_per_day / 86_400
            while t < incident.end:
                feature = rng.choices(tenant.features, sampler.weights)[0]
                calls.extend(sampler.call(t, feature))
                t += timedelta(seconds=rng.expovariate(bulk_rate))
    calls.sort(key=lambda c: c[0])
    yield from ((at, e) for at, e in calls if at < scenario.end)


def usage_events(scenario: Scenario) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """Every usage event of ``scenario`` in event-time order."""
    streams: list[Iterator[tuple[datetime, dict[str, Any]]]] = []
    for i, tenant in enumerate(scenario.tenants):
        streams.append(_tenant_stream(scenario, tenant, i))
        streams.append(_extra_stream(scenario, tenant, i))
    return heapq.merge(*streams, key=lambda pair: pair[0])


def mean_request_cost_nusd(
    tenant: Tenant, prices: PriceBook, *, samples: int = 4000, seed: int = 1
) -> int:
    """The average cost of one of ``tenant``'s requests under normal traffic, by sampling."""
    scenario = Scenario([tenant], datetime(2026, 1, 1, tzinfo=UTC), 1, seed=seed)
    sampler = _Sampler(scenario, tenant, seed)
    total = 0
    weights = [f.weight for f in tenant.features]
    at = scenario.start
    for _ in range(samples):
        feature = sampler.rng.choices(tenant.features, weights)[0]
        for _, e in sampler.call(at, feature):
            quote = prices.quote(e["provider"], e["model"], at, CallContext(batch=e["batch"]))
            if quote is None or e["cache"] != "none":
                continue
            tokens = TokenCounts(
                input=e["input_tokens"],
                output=e["output_tokens"],
                cached_input=e["cached_input_tokens"],
            )
            total += quote.cost_nusd(tokens)
    return total // samples

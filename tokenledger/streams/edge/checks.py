"""Gateway questions over HTTP, answered by the same SignalBook a Python BudgetGuard uses.

``GET /v1/check?tenant=&feature=&route=&est_cost_usd=`` answers with the decision as JSON;
``attempt``, ``provider`` and ``model`` (headers ``x-tokenledger-attempt``, ``-provider``,
``-model`` on /v1/authz) ask about the route's retry budget and circuit breaker too.
``/v1/authz`` answers Envoy ``ext_authz`` (HTTP service) and Kong-style callers: tenant,
feature, route and estimated cost from request headers (names configurable), 200 to allow,
429 with ``x-tokenledger-reason`` to refuse. ``/v1/authz/nginx`` is the same question for
nginx ``auth_request``, which treats any status but 2xx, 401 and 403 as an error: it refuses
with 403 and the reason header (a question it cannot answer too: no key, no tenant, a bad
name), which the nginx snippet in docs/edge.md turns into the 429 the client sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from tokenledger.contract.common import parse_usd, usd_to_nusd
from tokenledger.contract.names import name_problem
from tokenledger.signal_book import Decision, SignalBook
from tokenledger.streams.edge.bodies import HttpError, Reply, json_reply

REASON_HEADER = "x-tokenledger-reason"
STATE_HEADER = "x-tokenledger-state"


@dataclass(frozen=True)
class AuthzHeaders:
    tenant: str = "x-tokenledger-tenant"
    feature: str = "x-tokenledger-feature"
    route: str = "x-tokenledger-route"
    est_cost_usd: str = "x-tokenledger-est-cost-usd"
    attempt: str = "x-tokenledger-attempt"
    provider: str = "x-tokenledger-provider"
    model: str = "x-tokenledger-model"


@dataclass(frozen=True, slots=True)
class Question:
    tenant: str
    feature: str | None
    route: str | None
    est_cost_nusd: int | None
    attempt: int = 1
    provider: str | None = None
    model: str | None = None


def est_cost_nusd(raw: str, what: str) -> int:
    """A call's estimated cost in dollars, as nano-USD (to the nearest nano-dollar)."""
    try:
        usd = parse_usd(raw)
    except ValueError:
        raise HttpError(
            400, f"{what} {raw[:40]!r} is not a number of dollars, e.g. 0.0125", reason="bad_cost"
        ) from None
    if usd < 0 or usd > 10**9:
        raise HttpError(400, f"{what} must be between 0 and 1e9 dollars", reason="bad_cost")
    return usd_to_nusd(usd)


def attempt_of(raw: str | None, what: str) -> int:
    """The call's attempt number (1 = first); a retry is asked about its retry budget."""
    if not raw:
        return 1
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        problem = f"{what} {raw[:40]!r} is not a whole number from 1 to 1000 (1 = first attempt)"
        raise HttpError(400, problem, reason="bad_attempt")
    return int(raw)


def with_call(
    q: Question, get: Callable[[str], str | None], names: tuple[str, str, str]
) -> Question:
    """``q`` with the call's attempt, provider and model, read by their ``names`` (query
    parameters or headers): what retry budgets and circuit breakers are asked about."""
    attempt, provider, model = names
    return replace(
        q,
        attempt=attempt_of(get(attempt), attempt),
        provider=get(provider) or None,
        model=get(model) or None,
    )


def from_query(query: Mapping[str, str]) -> Question:
    tenant = query.get("tenant") or ""
    if not tenant:
        raise HttpError(
            400, "tenant is required: /v1/check?tenant=acme&feature=search", reason="no_tenant"
        )
    cost, feature = query.get("est_cost_usd"), query.get("feature")
    return with_call(
        Question(
            _named("tenant", tenant),
            _named("feature", feature) if feature else None,
            query.get("route") or None,
            est_cost_nusd(cost, "est_cost_usd") if cost else None,
        ),
        query.get,
        ("attempt", "provider", "model"),
    )


def from_headers(headers: Mapping[str, str], names: AuthzHeaders) -> Question:
    tenant = headers.get(names.tenant) or ""
    if not tenant:
        raise HttpError(
            400, f"the {names.tenant} header is required (the tenant to check)", reason="no_tenant"
        )
    cost, feature = headers.get(names.est_cost_usd), headers.get(names.feature)
    return with_call(
        Question(
            _named("tenant", tenant),
            _named("feature", feature) if feature else None,
            headers.get(names.route) or None,
            est_cost_nusd(cost, names.est_cost_usd) if cost else None,
        ),
        headers.get,
        (names.attempt, names.provider, names.model),
    )


def _named(what: str, value: str) -> str:
    """``value`` if it is a name: a scope holds only names, so nothing else can ever be
    limited, and an answer of "allow" for it would mislead."""
    problem = name_problem(value)
    if problem is not None:
        raise HttpError(400, f"{what} {value[:130]!r}: {problem}", reason="bad_name")
    return value


def decide(book: SignalBook, q: Question) -> Decision:
    return book.check(
        q.tenant, q.feature, q.est_cost_nusd, q.route, q.attempt, provider=q.provider, model=q.model
    )


def check_reply(decision: Decision) -> Reply:
    return json_reply(
        200,
        {
            "allowed": decision.allowed,
            "state": decision.state,
            "reason": decision.reason,
            "scope": decision.scope,
            "degraded": decision.degraded,
        },
    )


def authz_reply(decision: Decision, deny_status: int) -> Reply:
    headers = {STATE_HEADER: decision.state, REASON_HEADER: _header_safe(decision.reason)}
    if decision.allowed:
        return Reply(200, b"", "text/plain", headers)
    return Reply(deny_status, decision.reason.encode(), "text/plain", headers)


def refusal_reply(exc: HttpError, deny_status: int) -> Reply:
    """A question refused (no key, no tenant, a bad name or cost). Where denials are 403
    (nginx's ``auth_request`` makes any status but 2xx, 401 and 403 a 500 of its own), the
    refusal is a 403 too, with the reason in the header the gateway passes on."""
    if deny_status != 403:
        return exc.reply()
    headers = {STATE_HEADER: "refused", REASON_HEADER: _header_safe(exc.message)}
    return json_reply(403, {"error": exc.message}, headers)


def _header_safe(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:512]

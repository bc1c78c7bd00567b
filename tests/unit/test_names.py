"""Names stay names: no name holds the scope separator, so a scope names one tenant (and
feature); one parser reads scopes everywhere; the edge makes dimension values into names."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.helpers import factories
from tokenledger import Ledger
from tokenledger.bad_input import AsGiven
from tokenledger.contract.messages import Budget, RequestEvent, UsageEvent
from tokenledger.contract.names import NAME_PATTERN, as_name, budget_scope, parse_scope
from tokenledger.signal_book import SignalBook
from tokenledger.streams.edge import checks, genai_spans, keys, otlp_decode
from tokenledger.streams.edge.bodies import HttpError
from tokenledger.streams.errors import UserError
from tokenledger.streams.local.broker import free_port
from tokenledger.streams.records import Rejection, parse_message
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.budgets import BudgetTracker
from tokenledger.streams.worker.state import ChangelogState

NOW = datetime.now(UTC).replace(microsecond=0)
SEPARATOR = "'/' is the scope separator and cannot be part of a name (use - or . instead)"


def usage_raw(**overrides: Any) -> bytes:
    fields = json.loads(factories.usage(ts=NOW - timedelta(minutes=1)).model_dump_json())
    return json.dumps({**fields, **overrides}).encode()


@pytest.mark.parametrize("field", ["tenant_id", "feature", "route", "service", "provider"])
def test_a_name_with_the_scope_separator_is_dead_lettered_with_the_reason(field: str) -> None:
    got = parse_message(usage_raw(**{field: "acme/feature/answer"}), UsageEvent)
    assert got == Rejection("invalid_fields", f"{field}: {SEPARATOR}")


def test_model_names_keep_their_slash() -> None:
    got = parse_message(usage_raw(model="openai/gpt-4o-mini"), UsageEvent)
    assert isinstance(got, UsageEvent) and got.model == "openai/gpt-4o-mini"


def test_one_parser_reads_budget_scopes_of_names_only() -> None:
    assert parse_scope(budget_scope("acme", None)) == ("acme", None)
    assert parse_scope(budget_scope("acme", "answer")) == ("acme", "answer")
    for scope in (
        "tenant/team/a",
        "tenant/acme/feature/answer/x",
        "tenant/acme/route/rag",
        "tenant/",
        "tenant/a b",
        "team/a",
        "",
        "tenant/acme/feature/",
    ):
        assert parse_scope(scope) is None, scope


def test_budgets_and_signals_refuse_ambiguous_names() -> None:
    with pytest.raises(ValidationError, match="String should match pattern"):
        Budget(tenant_id="acme/feature/answer", limit_nusd=1, updated_at=NOW)
    with pytest.raises(
        ValidationError, match="scope 'tenant/team/a' is not the scope of tenant 'team'"
    ):
        factories.signal(scope="tenant/team/a", tenant_id="team", state="allow")
    book = SignalBook(topic="signals", public_keys=None)
    book.caught_up()
    book.apply(
        b"tenant/acme/feature/answer",
        factories.signal(scope="tenant/acme/feature/answer", feature="answer")
        .model_dump_json()
        .encode(),
    )
    forged = json.loads(
        factories.signal(state="allow", issued_at=NOW + timedelta(minutes=1)).model_dump_json()
    )
    forged.update(scope="tenant/acme/feature/answer", tenant_id="acme/feature/answer")
    book.apply(b"tenant/acme/feature/answer", json.dumps(forged).encode())
    assert book.invalid_signals == 1
    assert not book.check("acme", "answer").allowed


def test_removing_a_scope_of_no_budget_never_unblocks_another_tenant() -> None:
    """A worker that published a block for ``tenant/team/a`` (from before names lost '/')
    and then sees that scope removed does not publish ``allow`` for tenant ``team``."""
    state = ChangelogState()
    end_ms = int((NOW + timedelta(hours=1)).timestamp() * 1000)
    state.put("g:tenant/team/a", f"block|100|{end_ms}|{end_ms - 3_600_000}")
    tracker = BudgetTracker(state, BudgetDefinitions(), heartbeat=timedelta(days=1))
    tracker.book.apply(b"tenant/team/a", None)
    tracker.on_budgets_changed(["tenant/team/a"])
    assert tracker.end_batch(NOW) == []
    assert state.get("g:tenant/team/a") is None


def span(attrs: dict[str, Any], resource: dict[str, Any]) -> otlp_decode.Span:
    end = int(NOW.timestamp() * 1e9)
    return otlp_decode.Span(
        bytes(range(16)), bytes(range(8)), "chat", end - 10**9, end, None, attrs, resource
    )


@given(
    st.sampled_from(
        [
            "http.route",
            "tokenledger.feature",
            "tokenledger.user_scope",
            "gen_ai.prompt.version",
            "deployment.environment.name",
        ]
    ),
    st.text(max_size=200),
)
def test_any_dimension_text_becomes_a_name_and_never_costs_the_span(key: str, text: str) -> None:
    attrs = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "tokenledger.tenant_id": "acme",
        "gen_ai.usage.input_tokens": 10,
        key: text,
    }
    event = genai_spans.to_usage(span(attrs, {}), genai_spans.SpanMapping(), NOW)
    assert isinstance(event, UsageEvent), event
    values = (event.route, event.feature, event.user_scope, event.prompt_version, event.environment)
    assert all(v == "" or re.fullmatch(NAME_PATTERN, v) for v in values), values
    assert as_name(text) in values or as_name(text) == ""


def test_otlp_dimensions_become_names_and_tenants_are_never_rewritten() -> None:
    attrs = {
        "gen_ai.provider.name": "Azure OpenAI",
        "gen_ai.request.model": "openai/gpt 4o",
        "tokenledger.tenant_id": "acme",
        "gen_ai.usage.input_tokens": 10,
        "http.route": "/users/{id}",
        "tokenledger.feature": "{search}/v2",
    }
    resource = {"service.name": "checkout service", "deployment.environment.name": "prod/eu"}
    event = genai_spans.to_usage(span(attrs, resource), genai_spans.SpanMapping(), NOW)
    assert isinstance(event, UsageEvent), event
    assert (
        event.route,
        event.feature,
        event.service,
        event.environment,
        event.provider,
        event.model,
    ) == (
        "users._id_",
        "search_.v2",
        "checkout_service",
        "prod.eu",
        "Azure_OpenAI",
        "openai/gpt_4o",
    )
    rejected = genai_spans.to_usage(
        span({**attrs, "tokenledger.tenant_id": "acme/feature/x"}, resource),
        genai_spans.SpanMapping(),
        NOW,
    )
    assert rejected == (
        "invalid_fields",
        f"span 0001020304050607 of trace 000102030405060708090a0b0c0d0e0f: tenant_id: {SEPARATOR}",
    )


def test_gateway_questions_and_key_lists_refuse_ambiguous_names() -> None:
    with pytest.raises(HttpError) as caught:
        checks.from_query({"tenant": "team/a"})
    assert (caught.value.status, caught.value.message) == (400, f"tenant 'team/a': {SEPARATOR}")
    with pytest.raises(HttpError) as caught:
        checks.from_headers(
            {"x-tokenledger-tenant": "acme", "x-tokenledger-feature": "a/b"}, checks.AuthzHeaders()
        )
    assert (caught.value.status, caught.value.message) == (400, f"feature 'a/b': {SEPARATOR}")
    entry = keys.entry("checkout", ["team/a"], keys.new_key())
    with pytest.raises(UserError) as refused:
        keys.ApiKeys.parse(json.dumps({"keys": [entry]}), "keys.json")
    assert str(refused.value) == f"keys.json keys[0]: tenant 'team/a': {SEPARATOR}"


def test_track_with_a_scope_separator_sends_the_event_as_given_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger(
        "svc", bootstrap=f"127.0.0.1:{free_port()}", spill_dir=tmp_path, delivery_timeout_ms=500
    )
    sent: list[Any] = []
    ledger.emit = sent.append  # type: ignore[method-assign,assignment]
    try:
        with caplog.at_level(logging.WARNING, logger="tokenledger.bad_input"):
            with ledger.track(
                tenant_id="acme/feature/answer", feature="answer", model="gpt-4o", provider="openai"
            ) as call:
                call.record(input_tokens=10, output_tokens=5)
        assert [type(e) for e in sent] == [AsGiven, AsGiven]
        models: tuple[type[RequestEvent | UsageEvent], ...] = (RequestEvent, UsageEvent)
        for item, model in zip(sent, models, strict=True):
            topic, key, value = item.record
            assert key == b"acme/feature/answer"
            assert parse_message(value, model) == Rejection(
                "invalid_fields", f"tenant_id: {SEPARATOR}"
            )
        assert [r.getMessage() for r in caplog.records if r.name == "tokenledger.bad_input"] == [
            f"a request event does not fit the contract (tenant_id: {SEPARATOR}): it is sent "
            "as given and the worker dead-letters it; fix the arguments of this call"
        ]
    finally:
        ledger.close(timeout=1)

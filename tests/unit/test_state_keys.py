"""The registry of state-key kinds: each kind's key and value codecs give the exact text
the worker has always written (the table below, taken from the worker before the
registry), every typed key and value survives a round trip, the kinds' prefixes never
overlap, and no module but the registry spells a prefix."""

from __future__ import annotations

import ast
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers.paths import PACKAGE, ROOT
from tokenledger.streams.worker.anomalies import DETECTORS
from tokenledger.streams.worker.state_keys import (
    APPLIED,
    APPLIED_AT,
    BREAKER,
    BUCKET,
    EVALUATED,
    EVENT_ID,
    EXPIRING,
    GENERATION,
    IDS,
    INCIDENT,
    KINDS,
    LEVEL,
    OLD_EVENT_ID,
    OLD_GENERATION,
    OLD_SETTLED_REQUEST,
    PRE_DIGEST_EVENT_ID,
    PRE_DIGEST_GENERATION,
    PREFIXES,
    RESERVATION,
    RETRY_STATE,
    SETTLED,
    SETTLED_REQUEST,
    SIGNAL,
    SLOT,
    WATERMARK,
    WINDOW,
    BreakerKey,
    BucketKey,
    Dim,
    IncidentKey,
    Kind,
    RequestKey,
    RouteKey,
    SlotKey,
    WindowKey,
    decode_index_record,
    digest_key,
    encode_index_record,
    expiry_of,
    feature_dim,
    index_bound,
    index_key,
    legacy_entry,
    model_dim,
    parse_dim,
    route_dim,
    scoped_key,
    tenant_dim,
)
from tokenledger.streams.worker.state_values import (
    BreakerMark,
    Cooling,
    Firing,
    LegacyGeneration,
    Level,
    Reservation,
    RetryMark,
    SignalMark,
    WindowTotals,
    decode_seconds,
    encode_seconds,
)

T0 = 1_700_000_000_000
FORMATS: list[tuple[Kind[Any, Any], Any, str, Any, str]] = [
    # kind, key fields, key, value, value text
    (
        EVENT_ID,
        "7c8a0dd254a85d4101b3700bbabc34e6",
        "I:7c8a0dd254a85d4101b3700bbabc34e6",
        T0,
        "1700000000000",
    ),
    (
        GENERATION,
        "0019d37cb6859db5eb806c6df05c189f",
        "G:0019d37cb6859db5eb806c6df05c189f",
        T0,
        "1700000000000",
    ),
    (
        OLD_EVENT_ID,
        "70e50dc868a2d65956dcbf4480f2523b",
        "E:70e50dc868a2d65956dcbf4480f2523b",
        T0,
        "1700000000000",
    ),
    (
        OLD_GENERATION,
        "56eea00bbcad2f0a2ca2cc13492405d7",
        "K:56eea00bbcad2f0a2ca2cc13492405d7",
        T0,
        "1700000000000",
    ),
    (PRE_DIGEST_EVENT_ID, "evt-1", "d:evt-1", T0, "1700000000000"),
    (
        PRE_DIGEST_GENERATION,
        "order-1",
        "i:order-1",
        LegacyGeneration("evt-1", T0),
        "evt-1|1700000000000",
    ),
    (
        RESERVATION,
        RequestKey("acme", "req-1", 2),
        "r:acme req-1:2",
        Reservation("acme", "answer", 16_500_000, T0),
        "acme|answer|16500000|1700000000000",
    ),
    (
        RESERVATION,
        RequestKey(None, "req:1", 1),
        "r:req:1:1",
        Reservation("drip", "tagging", 7_000_000, 1795154405000),
        "drip|tagging|7000000|1795154405000",
    ),
    (
        SETTLED_REQUEST,
        RequestKey("pause", "dr2", 1),
        "s:pause dr2:1",
        1795154412723,
        "1795154412723",
    ),
    (
        OLD_SETTLED_REQUEST,
        RequestKey(None, "req-before-scoping", 1),
        "x:req-before-scoping:1",
        T0,
        "1700000000000",
    ),
    (
        WINDOW,
        WindowKey("hour", "tf=acme|answer", T0),
        "w:hour:tf=acme|answer:1700000000000",
        WindowTotals(996_000, 20, 0),
        "996000,20,0",
    ),
    (
        WINDOW,
        WindowKey("day", "t=a:b", 1795132800000),
        "w:day:t=a:b:1795132800000",
        WindowTotals(800_000, 1, 3),
        "800000,1,3",
    ),
    (
        SLOT,
        SlotKey("tf=acme|answer", 1700000100000),
        "q:tf=acme|answer:1700000100000",
        800_000,
        "800000",
    ),
    (
        SIGNAL,
        "tenant/drip",
        "g:tenant/drip",
        SignalMark("block", 100, 1795219200000, 1795161182051),
        "block|100|1795219200000|1795161182051",
    ),
    (
        SIGNAL,
        "tenant/gone",
        "g:tenant/gone",
        SignalMark("allow", None, 1795156224000, 1795156224000),
        "allow||1795156224000|1795156224000",
    ),
    (
        SIGNAL,
        "tenant/old",
        "g:tenant/old",
        SignalMark("warn", 80, T0, None),
        "warn|80|1700000000000",
    ),
    (WATERMARK, None, "m:watermark", 1795154412723, "1795154412723"),
    (EVALUATED, None, "a:e", 1795154400000, "1795154400000"),
    (
        BUCKET,
        BucketKey("t=pause", 1795154400000),
        "a:b:t=pause:1795154400000",
        [800_000, 1, 800_000, 0, 0, 0],
        "800000,1,800000,0,0,0",
    ),
    (
        INCIDENT,
        IncidentKey("retry_storm", "t=drip"),
        "a:f:retry_storm:t=drip",
        Firing(T0, 42, 3, "ab" * 16, "critical"),
        "firing|1700000000000|42|3|abababababababababababababababab|critical",
    ),
    (
        INCIDENT,
        IncidentKey("budget_burn", "tenant/acme/feature/x"),
        "a:f:budget_burn:tenant/acme/feature/x",
        Cooling(1795159380000),
        "cool|1795159380000",
    ),
    (
        LEVEL,
        "tr=acme|rag",
        "a:l:tr=acme|rag",
        Level(0.1 + 0.2, 2 / 3, 1700000040000),
        "0.30000000000000004|0.66666666666666663|1700000040000",
    ),
    (LEVEL, "t=drip", "a:l:t=drip", Level(0.0, 1.0, 1795154400000), "0|1|1795154400000"),
    (
        RETRY_STATE,
        RouteKey("pause", "draft"),
        "rb:pause|draft",
        RetryMark("allow", 0, {1795154412: [1, 0, 0]}),
        "allow|0|1795154412:1:0:0",
    ),
    (
        BREAKER,
        BreakerKey("drip", "flaky", "openai", "gpt-4.1-nano"),
        "cb:drip|flaky|openai|gpt-4.1-nano",
        BreakerMark(
            True,
            T0,
            T0 + 30_000,
            1,
            0,
            20,
            12,
            T0 + 500,
            "open@1700000030000",
            {1700000000: [1, 1]},
        ),
        "1|1700000000000|1700000030000|1|0|20|12|1700000000500|open@1700000030000|1700000000:1:1",
    ),
    (
        BREAKER,
        BreakerKey("pause", "draft", "openai", "gpt-4.1-mini"),
        "cb:pause|draft|openai|gpt-4.1-mini",
        BreakerMark(False, 0, 0, 0, 0, 0, 0, 0, "closed", {}),
        "0|0|0|0|0|0|0|0|closed|",
    ),
]


def test_every_kind_has_its_format_written_out() -> None:
    assert {id(kind) for kind, *_ in FORMATS} == {id(kind) for kind in KINDS}


def test_each_kind_writes_and_reads_the_text_it_always_did() -> None:
    for kind, fields, key, value, text in FORMATS:
        assert kind.encode_key(fields) == key
        assert kind.decode_key(key) == fields
        assert kind.encode_value(value) == text, key
        assert kind.decode_value(text) == value, key
        assert expiry_of(key) == kind.expiry, key


def test_ids_are_digests_of_tenant_and_id() -> None:
    assert scoped_key(EVENT_ID, "acme", "evt-1") == "I:7c8a0dd254a85d4101b3700bbabc34e6"
    assert scoped_key(GENERATION, "acme", "order-1") == "G:0019d37cb6859db5eb806c6df05c189f"
    assert digest_key(OLD_EVENT_ID, "evt-1") == "E:70e50dc868a2d65956dcbf4480f2523b"
    assert digest_key(OLD_GENERATION, "order-1") == "K:56eea00bbcad2f0a2ca2cc13492405d7"
    assert legacy_entry("d:evt-1", "1700000000000") == ("E:70e50dc868a2d65956dcbf4480f2523b", T0)
    old = legacy_entry("i:order-1", "evt-1|1700000000000")
    assert old == ("K:56eea00bbcad2f0a2ca2cc13492405d7", T0)
    assert legacy_entry("I:7c8a0dd254a85d4101b3700bbabc34e6", "1700000000000") is None


def test_dimensions_store_and_index_records() -> None:
    assert (tenant_dim("acme"), feature_dim("acme", "answer")) == ("t=acme", "tf=acme|answer")
    assert (model_dim("acme", "gpt-4o"), route_dim("acme", "rag")) == (
        "tm=acme|gpt-4o",
        "tr=acme|rag",
    )
    assert parse_dim("tm=a:b|models/x:1") == Dim("tm", "a:b", "models/x:1")
    assert encode_seconds({1700000003: [0, 2, 900], 1700000001: [1, 0, 0]}) == (
        "1700000001:1:0:0,1700000003:0:2:900"
    )
    assert index_key(IDS, T0, 0x18B, 1) == b"X:0000018bcfe56800:18b.1"
    assert index_bound(SETTLED, -5) == b"Y:0000000000000000:"
    assert encode_index_record(["I:1", "G:2"]) == b"I:1\nG:2"
    assert decode_index_record(b"I:1\nG:2") == ["I:1", "G:2"]
    assert (APPLIED, APPLIED_AT) == (b"~applied", b"~applied_at_ms")
    assert EXPIRING == {"I:": IDS, "G:": IDS, "E:": IDS, "K:": IDS, "s:": SETTLED, "x:": SETTLED}


def test_no_prefix_is_the_start_of_another() -> None:
    """``state.items(prefix)`` of one kind never yields another kind's keys."""
    prefixes = [kind.prefix for kind in KINDS]
    for a in prefixes:
        assert [b for b in prefixes if b != a and b.startswith(a)] == [], a


# -- round trips -------------------------------------------------------------------------

NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,24}", fullmatch=True)
MODEL_NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,24}", fullmatch=True)
ID = st.text(
    st.one_of(st.sampled_from(":|="), st.characters(min_codepoint=0x21, max_codepoint=0x7E)),
    min_size=1,
    max_size=40,
)
"""Printable ASCII without a space, separators often."""
MS = st.integers(0, 2**62)
INT = st.integers(-(2**63), 2**63)
HEX = st.text("0123456789abcdef", min_size=32, max_size=32)
DIM = st.one_of(
    st.builds(tenant_dim, NAME),
    st.builds(feature_dim, NAME, NAME),
    st.builds(model_dim, NAME, MODEL_NAME),
    st.builds(route_dim, NAME, NAME),
)
BUDGET_SCOPE = st.one_of(
    st.builds(lambda t: f"tenant/{t}", NAME),
    st.builds(lambda t, f: f"tenant/{t}/feature/{f}", NAME, NAME),
)
REQUEST = st.builds(RequestKey, st.one_of(st.none(), NAME), ID, st.integers(1, 10**6))
SECONDS = st.dictionaries(MS, st.lists(st.integers(0, 2**62), min_size=2, max_size=3))
STRATEGIES: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "I:": (HEX, MS),
    "G:": (HEX, MS),
    "E:": (HEX, MS),
    "K:": (HEX, MS),
    "d:": (ID, MS),
    "i:": (ID, st.builds(LegacyGeneration, ID, MS)),
    "r:": (REQUEST, st.builds(Reservation, NAME, NAME, MS, MS)),
    "s:": (REQUEST, MS),
    "x:": (REQUEST, MS),
    "w:": (
        st.builds(WindowKey, st.sampled_from(["minute", "hour", "day"]), DIM, MS),
        st.builds(WindowTotals, MS, MS, MS),
    ),
    "q:": (st.builds(SlotKey, DIM, MS), MS),
    "g:": (
        BUDGET_SCOPE,
        st.builds(
            SignalMark,
            st.sampled_from(["allow", "warn", "block"]),
            st.one_of(st.none(), st.integers(1, 100)),
            MS,
            st.one_of(st.none(), MS),
        ),
    ),
    "m:watermark": (st.none(), MS),
    "a:e": (st.none(), MS),
    "a:b:": (st.builds(BucketKey, DIM, MS), st.lists(INT, min_size=1, max_size=8)),
    "a:f:": (
        st.builds(IncidentKey, st.sampled_from(DETECTORS), st.one_of(DIM, BUDGET_SCOPE)),
        st.one_of(
            st.builds(
                Firing, MS, INT, st.integers(0, 99), HEX, st.sampled_from(["critical", "warning"])
            ),
            st.builds(Cooling, MS),
        ),
    ),
    "a:l:": (DIM, st.builds(Level, st.floats(allow_nan=False), st.floats(allow_nan=False), MS)),
    "rb:": (
        st.builds(RouteKey, NAME, NAME),
        st.builds(RetryMark, st.sampled_from(["allow", "block"]), MS, SECONDS),
    ),
    "cb:": (
        st.builds(BreakerKey, NAME, NAME, NAME, MODEL_NAME),
        st.builds(
            BreakerMark,
            st.booleans(),
            *[MS] * 7,
            st.one_of(st.just("closed"), st.builds(lambda ms: f"open@{ms}", MS)),
            SECONDS,
        ),
    ),
}
BY_PREFIX = {kind.prefix: kind for kind in KINDS}


def test_every_kind_has_a_round_trip_strategy() -> None:
    assert set(STRATEGIES) == set(BY_PREFIX)


@pytest.mark.parametrize("prefix", sorted(STRATEGIES))
@given(data=st.data())
def test_keys_and_values_survive_a_round_trip(prefix: str, data: st.DataObject) -> None:
    keys, values = STRATEGIES[prefix]
    fields, value = data.draw(keys), data.draw(values)
    kind = BY_PREFIX[prefix]
    key = kind.encode_key(fields)
    assert key.startswith(prefix)
    assert [p for p in BY_PREFIX if key.startswith(p)] == [prefix]  # read as its own kind
    assert kind.decode_key(key) == fields
    assert kind.encode_key(kind.decode_key(key)) == key
    assert expiry_of(key) == kind.expiry
    text = kind.encode_value(value)
    assert kind.decode_value(text) == value
    assert kind.encode_value(kind.decode_value(text)) == text


@given(DIM)
def test_dimensions_survive_a_round_trip(text: str) -> None:
    assert parse_dim(text).encode() == text


@given(SECONDS)
def test_seconds_survive_a_round_trip(seconds: dict[int, list[int]]) -> None:
    assert decode_seconds(encode_seconds(seconds)) == seconds


# -- one place -----------------------------------------------------------------------------

REGISTRY = PACKAGE / "streams" / "worker" / "state_keys.py"


def _literal_heads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string or bytes literal, and of each f-string's leading text."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            value = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            out.append((node.lineno, value))
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                out.append((node.lineno, head.value))
    return out


def prefix_literals(paths: list[Any]) -> list[str]:
    found = []
    for path in paths:
        for line, text in _literal_heads(ast.parse(path.read_text(), str(path))):
            if any(text.startswith(p) for p in PREFIXES):
                found.append(f"{path.relative_to(ROOT)}:{line}: {text[:40]!r}")
    return found


def test_no_module_but_the_registry_spells_a_state_key_prefix() -> None:
    sources = [
        p for p in [*PACKAGE.rglob("*.py"), *(ROOT / "bench").rglob("*.py")] if p != REGISTRY
    ]
    assert len(sources) > 100
    assert prefix_literals(sources) == []
    assert len(prefix_literals([REGISTRY])) >= len(KINDS)  # the scan sees them where they are

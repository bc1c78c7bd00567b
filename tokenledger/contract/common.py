"""Types shared by every message: names, timestamps, token counts, the event envelope.

Money is integer nano-USD (``*_nusd``: 1 USD = 1_000_000_000) everywhere in messages and rows,
so sums are exact integer arithmetic and JSON never carries a binary float for money.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from tokenledger.contract.names import MODEL_NAME_PATTERN, NAME_CHARS, NAME_PATTERN

SCHEMA_VERSION = 3
"""The message schema version this code writes. It reads every version in SCHEMA_VERSIONS; a
message with another is rejected. Version 2 added usage fields ``cache_write_1h_tokens`` and
``service_tier``; a version 1 event reads as before (no 1-hour writes, standard tier).
Version 3 added usage fields ``replay_of`` (a retry answered from a claim), ``input_hash``,
``prefix_hash``, ``prefix_tokens`` and ``latency_class``; older events read as no replay, no
hashes, interactive."""

SCHEMA_VERSIONS = (1, 2, 3)

NANO_PER_USD = 1_000_000_000

MAX_TOKENS = 10_000_000
"""Token counts above this in one call are not plausible and are rejected as absurd."""

MAX_FUTURE = timedelta(minutes=10)
MAX_PAST = timedelta(days=30)

Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(
        description=f"1-128 chars: {NAME_CHARS}; starts alphanumeric; never '/', which "
        "separates the parts of a scope"
    ),
]
OptionalName = Annotated[
    str,
    StringConstraints(pattern=r"^$|" + NAME_PATTERN),
    Field(description=f"empty, or a name (1-128 chars: {NAME_CHARS})"),
]
ModelName = Annotated[
    str,
    StringConstraints(pattern=MODEL_NAME_PATTERN),
    Field(description=f"a model name: 1-128 chars, {NAME_CHARS} and / (openai/gpt-4o)"),
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Text = Annotated[str, StringConstraints(max_length=2048)]
Digest = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{32}$"),
    Field(description="a keyed 128-bit digest, 32 lowercase hex digits (never the text itself)"),
]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Nusd = Annotated[int, Field(ge=0, le=2**62, description="money in nano-USD (1e-9 USD)")]


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp needs a timezone, e.g. 2026-01-31T12:00:00Z")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


class Message(BaseModel):
    """Base of every Kafka message: strict types, no unknown fields, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_version: Literal[1, 2, 3] = Field(
        default=3, description="message schema version; this release reads 1 to 3, writes 3"
    )


class Event(Message):
    """The envelope every request, usage and outcome event carries (DESIGN.md: Messages)."""

    event_id: Id = Field(description="unique per emission; redeliveries share it")
    request_id: Id = Field(description="one logical request (all attempts)")
    idempotency_key: Id = Field(description="same across retries of one logical request")
    attempt: int = Field(default=1, ge=1, le=1000)
    ts: UtcDatetime = Field(description="event time, UTC")
    tenant_id: Name
    user_scope: OptionalName = ""
    service: Name
    feature: Name
    route: OptionalName = ""
    prompt_version: OptionalName = ""
    model: ModelName
    provider: Name
    environment: Name = "prod"


def parse_usd(text: str) -> Decimal:
    """Dollars as people write them ('12.50', '$12.50', ' 0.000000001 '), exactly: never a
    binary float. ValueError for anything that is not a finite amount (words, NaN, Infinity)."""
    try:
        usd = Decimal(text.strip().removeprefix("$"))
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount of dollars") from None
    if not usd.is_finite():  # no arithmetic on NaN or Infinity (sNaN raises)
        raise ValueError(f"{text!r} is not an amount of dollars")
    return usd


def usd_to_nusd(usd: Decimal, *, exact: bool = False) -> int:
    """Dollars as nano-USD, to the nearest nano-dollar (half to even); ``exact`` refuses an
    amount with more than 9 decimals (ValueError) instead of rounding it."""
    nano = usd * NANO_PER_USD
    whole = nano.to_integral_value(ROUND_HALF_EVEN)
    if exact and whole != nano:
        raise ValueError(f"${usd} is not a whole number of nano-dollars")
    return int(whole)


def format_usd(nusd: int, *, exact: bool = False) -> str:
    """Nano-USD for people: cents for $1 and up, four decimals below ($0.0012); ``exact``
    shows every significant digit ($0.050000001), at least two decimals."""
    if nusd < 0:
        return "-" + format_usd(-nusd, exact=exact)
    usd = Decimal(nusd) / NANO_PER_USD
    if exact:
        digits = max(2, -usd.normalize().as_tuple().exponent)  # type: ignore[operator]
        return f"${usd:,.{digits}f}"
    return f"${usd:,.2f}" if abs(usd) >= 1 else f"${usd:,.4f}"


def format_evidence(value: int, unit: str) -> str:
    """An alert's observed or expected value in its unit, for people: nano-USD units as
    dollars with their period ("$1.23 per 2 min"), permille as a percentage."""
    if unit.startswith("nusd"):
        per = unit.partition("/")[2]
        period = {"2min": "per 2 min", "min": "per min", "window": "in the window"}.get(per, per)
        return f"{format_usd(value)} {period}".rstrip()
    if unit == "x1000_reference":
        return f"{value / 1000:.2f}x the reference model"
    if unit == "permille":
        return f"{value / 10:.1f}%"
    return f"{value:,} {unit}".rstrip()


def check_event_time(ts: datetime, now: datetime) -> str | None:
    """Why ``ts`` is not a plausible event time relative to ``now`` (None when it is)."""
    if ts > now + MAX_FUTURE:
        return f"timestamp {ts.isoformat()} is more than {MAX_FUTURE} in the future"
    if ts < now - MAX_PAST:
        return f"timestamp {ts.isoformat()} is more than {MAX_PAST.days} days in the past"
    return None

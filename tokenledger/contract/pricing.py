"""Token classes, resolved rates and the exact pricing function.

A cost is the exact Decimal sum of every token class at its rate (plus a per-request fee
where the provider has one), rounded once, half-to-even, to integer nano-USD. Rates are held
in nano-USD per token: 1 USD per 1M tokens is exactly 1000 nano-USD per token. Decimal
arithmetic on rates runs in ``EXACT``, where a result that would need rounding raises
instead of being rounded: the only rounding is the one per call, on integers.

Where the rates come from is ``tokenledger.contract.price_book`` (the operator's file on top of the
``genai-prices`` snapshot); this module only knows how to apply them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)

NANO_PER_USD_PER_MTOK = Decimal(1000)  # 1e9 nano-USD / 1e6 tokens

EXACT = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow]
)
"""The context of every Decimal operation on prices (``with exactly():``): 60
digits hold any rate a price file or genai-prices gives times any scale and discount, and
anything that would still round (``Inexact``) raises rather than silently changing a
price."""


@contextmanager
def exactly() -> Iterator[None]:
    """The block's Decimal arithmetic in ``EXACT``; a result that would have to be rounded
    is a ValueError that says so."""
    with localcontext(EXACT):
        try:
            yield
        except Inexact:
            raise ValueError(
                f"a price with more than {EXACT.prec} significant digits cannot be applied "
                "exactly; shorten it"
            ) from None


@dataclass(frozen=True)
class TokenCounts:
    """Token classes of one call, in the convention of tokenledger.contract.messages (parts included):
    ``input`` counts cache reads and writes, ``cache_write`` counts its 1-hour part
    ``cache_write_1h``, ``output`` counts ``reasoning``."""

    input: int
    output: int
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0
    cache_write_1h: int = 0

    def uncached(self) -> TokenCounts:
        """The same tokens with no prompt-cache reads or writes: every input at list price."""
        return TokenCounts(input=self.input, output=self.output, reasoning=self.reasoning)

    def parts(self) -> tuple[int, int, int, int, int, int]:
        """Disjoint counts in the order of ``Rates.per_token``; raises when parts exceed
        their totals."""
        uncached = self.input - self.cached_input - self.cache_write
        write_5m = self.cache_write - self.cache_write_1h
        visible = self.output - self.reasoning
        if uncached < 0 or write_5m < 0 or visible < 0 or self.cache_write_1h < 0:
            raise ValueError("token parts exceed their totals (see tokenledger.contract.messages)")
        return (uncached, self.cached_input, write_5m, self.cache_write_1h, visible, self.reasoning)


TOKEN_CLASSES = ("input", "cached_read", "cache_write_5m", "cache_write_1h", "output", "reasoning")
"""The disjoint token classes a rate prices, in the order of ``TokenCounts.parts``."""


@dataclass(frozen=True)
class Rates:
    """Flat rates: nano-USD per token of each class, plus a fee per request.

    The hot path works in integers: every rate times one power of ten (``_scale``) is a
    whole number, so a cost is an exact integer sum divided once, half to even. That is
    the same number as the Decimal sum, without Decimal's cost per operation."""

    per_token: tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal]
    per_request: Decimal = Decimal(0)
    _ints: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _request: int = field(init=False, repr=False, compare=False)
    _scale: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = (*self.per_token, self.per_request)
        if not all(v.is_finite() for v in values):
            raise ValueError("rates must be finite decimals")
        places = max(0, *(-int(v.as_tuple().exponent) for v in values))
        scale = 10**places
        with exactly():
            ints = [int(v * scale) for v in values]
        object.__setattr__(self, "_ints", tuple(ints[:6]))
        object.__setattr__(self, "_request", ints[6])
        object.__setattr__(self, "_scale", scale)

    def cost_nusd(self, tokens: TokenCounts) -> int:
        """Exact cost in nano-USD, rounded once, half to even."""
        return self.cost_of_parts(tokens.parts())

    def cost_of_parts(self, p: tuple[int, int, int, int, int, int]) -> int:
        """``cost_nusd`` of disjoint counts already split (``TokenCounts.parts``)."""
        a, b, c, d, e, f = self._ints
        total = self._request + p[0] * a + p[1] * b + p[2] * c + p[3] * d + p[4] * e + p[5] * f
        scale = self._scale
        if scale == 1:
            return total
        q, r = divmod(total, scale)
        twice = 2 * r
        if twice > scale or (twice == scale and q % 2):
            q += 1
        return q

    def scaled(self, factor: Decimal) -> Rates:
        with exactly():
            per_token = tuple(r * factor for r in self.per_token)
            per_request = self.per_request * factor
        return Rates(per_token, per_request)  # type: ignore[arg-type]

    @classmethod
    def per_mtok(
        cls,
        input: Decimal,
        output: Decimal,
        cached_read: Decimal | None = None,
        cache_write: Decimal | None = None,
        cache_write_1h: Decimal | None = None,
        reasoning: Decimal | None = None,
    ) -> Rates:
        """Rates from USD-per-1M-token prices; a missing cache or reasoning rate is the
        input (output) rate, a missing 1-hour write rate is the 5-minute one."""
        write = input if cache_write is None else cache_write
        prices = (
            input,
            input if cached_read is None else cached_read,
            write,
            write if cache_write_1h is None else cache_write_1h,
            output,
            output if reasoning is None else reasoning,
        )
        with exactly():
            per_token = tuple(p * NANO_PER_USD_PER_MTOK for p in prices)
        return cls(per_token)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TieredRates:
    """Rates that change with the prompt size, as providers bill it: the whole call pays the
    rate of the highest tier whose threshold its input tokens exceed (a cliff, not a band).
    ``tiers`` is ``(threshold, rates)`` ascending; the first threshold is -1 (every call)."""

    tiers: tuple[tuple[int, Rates], ...]

    def for_input(self, input_tokens: int) -> Rates:
        chosen = self.tiers[0][1]
        for threshold, rates in self.tiers[1:]:
            if input_tokens > threshold:
                chosen = rates
            else:
                break
        return chosen

    def cost_nusd(self, tokens: TokenCounts) -> int:
        """Exact cost of ``tokens`` in nano-USD, rounded once, half-to-even."""
        return self.for_input(tokens.input).cost_nusd(tokens)

    def scaled(self, factor: Decimal) -> TieredRates:
        return TieredRates(tuple((t, r.scaled(factor)) for t, r in self.tiers))

    @classmethod
    def flat(cls, rates: Rates) -> TieredRates:
        return cls(((-1, rates),))


@dataclass(frozen=True)
class Quote:
    """The rates in force for one model at one time, and where they came from."""

    rates: TieredRates
    source: str  # "file" (the operator's prices) or "genai-prices"
    model: str  # the model the rates belong to, as the source names it
    provider: str
    version: str  # goes into every enriched event's pricing_version (<= 128 chars)

    def cost_nusd(self, tokens: TokenCounts) -> int:
        return self.rates.cost_nusd(tokens)


@dataclass(frozen=True)
class Priced:
    cost_nusd: int
    pricing_version: str

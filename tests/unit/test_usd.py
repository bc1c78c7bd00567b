"""Dollars as people write them become exact nano-USD through one parser: budget limits,
retry budget caps, the edge's estimated costs and providers' cost reports."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tokenledger.contract.common import parse_usd, usd_to_nusd
from tokenledger.streams.admin.budgets import usd_option
from tokenledger.streams.errors import UserError


@pytest.mark.parametrize(
    ("text", "usd"),
    [
        ("50", Decimal("50")),
        ("$12.50", Decimal("12.50")),
        (" 0.000000001 ", Decimal("0.000000001")),
        ("-3", Decimal("-3")),
        ("1e-3", Decimal("0.001")),
        ("0", Decimal("0")),
    ],
)
def test_amounts_are_read_exactly(text: str, usd: Decimal) -> None:
    assert parse_usd(text) == usd


@pytest.mark.parametrize("text", ["", "$", "lots", "NaN", "sNaN", "Infinity", "-inf", "1,5", "$$1"])
def test_what_is_not_a_finite_amount_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not an amount of dollars"):
        parse_usd(text)


def test_dollars_become_nano_dollars_rounded_half_to_even_or_exactly() -> None:
    assert usd_to_nusd(Decimal("12.5")) == 12_500_000_000
    assert usd_to_nusd(Decimal("0.000000001")) == 1
    assert usd_to_nusd(Decimal("0.0000000015")) == 2
    assert usd_to_nusd(Decimal("0.0000000025")) == 2
    assert usd_to_nusd(Decimal("-0.0000000015")) == -2
    assert usd_to_nusd(Decimal("0.123456789"), exact=True) == 123_456_789
    with pytest.raises(ValueError, match="not a whole number of nano-dollars"):
        usd_to_nusd(Decimal("0.0000000015"), exact=True)


def test_an_option_takes_a_positive_exact_amount() -> None:
    assert usd_option("$12.50", "--limit-usd", "50") == 12_500_000_000
    assert usd_option("0.000000001", "--limit-usd", "50") == 1
    assert usd_option("4", "--max-usd", "5", most=4 * 10**9) == 4 * 10**9
    cases = {
        ("sNaN", None): "--max-usd 'sNaN' is not an amount; write e.g. 5 or 0.50",
        ("0", None): "--max-usd '0' must be positive with at most 9 decimals",
        ("-1", None): "--max-usd '-1' must be positive with at most 9 decimals",
        ("1e-10", None): "--max-usd '1e-10' must be positive with at most 9 decimals",
        ("4.000000001", 4 * 10**9): (
            "--max-usd '4.000000001' must be positive with at most 9 decimals"
        ),
    }
    for (text, most), message in cases.items():
        with pytest.raises(UserError) as raised:
            usd_option(text, "--max-usd", "5 or 0.50", most=most)
        assert str(raised.value) == message

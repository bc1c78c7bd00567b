"""One unit in the price file (USD per 1M tokens, every discount a percentage), refused
when it says otherwise; price arithmetic exact, or an error, never a silent rounding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tokenledger.contract.price_book import CallContext, load_price_book
from tokenledger.contract.price_file import PriceFileError
from tokenledger.contract.pricing import Rates, TokenCounts

AT = datetime(2026, 1, 15, tzinfo=UTC)
MODEL = {"model": "m", "provider": "p", "valid_from": "2020-01-01", "input": "2", "output": "8"}


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (
            {"currency": "EUR"},
            "currency: 'EUR' is not supported: tokenledger counts US dollars; "
            'convert the prices to USD and write "USD"',
        ),
        (
            {"unit": "per_1k_tokens"},
            "unit: 'per_1k_tokens' is not supported: write every price in USD per 1M tokens "
            '("per_1m_tokens"; a price per 1K tokens times 1000)',
        ),
        (
            {"models": [{**MODEL, "batch_discount": "0.5"}]},
            "models.0: batch_discount (a fraction) is now batch_discount_percent, a percentage "
            'like every discount: write "50" for half price',
        ),
        (
            {"models": [{**MODEL, "batch_discount_percent": "150"}]},
            "models.0.batch_discount_percent: Input should be less than 100",
        ),
    ],
)
def test_a_file_in_another_unit_is_refused_with_what_to_write(
    tmp_path: Path, doc: dict[str, Any], says: str
) -> None:
    path = write(tmp_path, {"models": [MODEL], **doc})
    with pytest.raises(PriceFileError) as err:
        load_price_book(path)
    assert str(err.value) == f"price file {path}: {says}"


def test_the_stated_units_and_a_batch_percentage(tmp_path: Path) -> None:
    model = {**MODEL, "batch_discount_percent": "50"}
    doc = {"currency": "USD", "unit": "per_1m_tokens", "models": [model]}
    book = load_price_book(write(tmp_path, doc))
    tokens = TokenCounts(input=1000, output=100)
    plain = book.price("p", "m", AT, tokens)
    batch = book.price("p", "m", AT, tokens, CallContext(batch=True))
    assert plain is not None and plain.cost_nusd == 1000 * 2000 + 100 * 8000
    assert batch is not None and batch.cost_nusd == 1000 * 1000 + 100 * 4000


def test_a_price_beyond_the_default_decimal_precision_is_applied_exactly(tmp_path: Path) -> None:
    # 0.5 + 1e-29 nano-USD a token: 29 significant digits, one more than Decimal's default
    # context keeps, which would round it to 0.5 and the call half-to-even to 0
    model = {**MODEL, "input": "0.00050000000000000000000000000001", "output": "0"}
    book = load_price_book(write(tmp_path, {"models": [model]}))
    priced = book.price("p", "m", AT, TokenCounts(input=1, output=0))
    assert priced is not None and priced.cost_nusd == 1


def test_a_price_that_cannot_be_applied_exactly_is_refused(tmp_path: Path) -> None:
    digits = "1." + "3" * 64  # 65 significant digits
    with pytest.raises(ValueError) as err:
        Rates.per_mtok(Decimal(digits), Decimal(1))
    says = "a price with more than 60 significant digits cannot be applied exactly; shorten it"
    assert str(err.value) == says
    path = write(tmp_path, {"models": [{**MODEL, "input": digits}]})
    with pytest.raises(PriceFileError) as refused:
        load_price_book(path)  # when the file is read, not when the first event needs it
    assert str(refused.value) == f"model 'm': {says}"

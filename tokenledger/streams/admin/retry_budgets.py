"""Write and read retry budget definitions: records of the budgets topic (key = scope),
signed and stamped like budgets (tokenledger.streams.admin.budgets), read back through the workers'
own book."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from tokenledger.contract.call_control import RetryBudget, retry_budget_scope
from tokenledger.contract.common import format_usd
from tokenledger.streams.admin import budgets as budget_admin
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError
from tokenledger.streams.worker.retry_budgets import DEFAULT, limits_of


def whole(text: str, option: str, top: int, example: int) -> int:
    """A whole number 0..top given as ``option``."""
    if not (text.strip().isascii() and text.strip().isdigit()):
        raise UserError(f"{option} {text!r} is not a whole number, e.g. {option} {example}")
    value = int(text)
    if value > top:
        raise UserError(f"{option} {value} is more than {top:,}")
    return value


def make(
    tenant: str,
    route: str,
    percent: str | None,
    min_per_minute: str | None,
    max_usd_text: str | None,
) -> RetryBudget:
    """The definition the CLI options describe (unset ones take the defaults)."""
    pct = DEFAULT.percent if percent is None else whole(percent, "--percent", 1000, 20)
    floor = DEFAULT.min_per_minute
    if min_per_minute is not None:
        floor = whole(min_per_minute, "--min-per-minute", 1_000_000, 10)
    cap = None
    if max_usd_text is not None:
        cap = budget_admin.usd_option(max_usd_text, "--max-usd", "5 or 0.50", most=2**62)
    try:
        return RetryBudget(
            tenant_id=tenant,
            route=route,
            percent=pct,
            min_per_minute=floor,
            max_retry_nusd=cap,
            updated_at=datetime.now(UTC),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]).removesuffix("_id")
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "string_pattern_mismatch":
            message = "use 1-128 letters, digits and . _ : / @ + - (starting alphanumeric)"
        raise UserError(f"--{where} {first['input']!r}: {message}") from None


def put(settings: Settings, budget: RetryBudget) -> RetryBudget:
    return budget_admin.put(settings, budget)


def remove(settings: Settings, tenant: str, route: str) -> bool:
    """Back to the defaults; False when the route had no definition of its own."""
    return budget_admin.remove(settings, retry_budget_scope(tenant, route))


def current(settings: Settings) -> list[RetryBudget]:
    book = budget_admin.read(settings)
    return sorted(book.retry_budgets.by_scope.values(), key=lambda b: b.scope)


def describe(budget: RetryBudget | None, tenant: str = "", route: str = "") -> str:
    """One line: whose budget, and what it allows (``None``: the defaults)."""
    scope = budget.scope if budget is not None else retry_budget_scope(tenant, route)
    limits = limits_of(budget)
    cap = limits.max_retry_nusd
    money = f", at most {format_usd(cap, exact=True)} of retries" if cap is not None else ""
    return (
        f"{scope}: retries up to {limits.percent}% of first attempts, at least "
        f"{limits.min_per_minute}, per minute{money}"
    )

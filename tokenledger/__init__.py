"""tokenledger: the SDK services import to report LLM calls and gateways use to guard them.

from tokenledger import Ledger, BudgetGuard

ledger = Ledger(service="support-bot")
with ledger.track(tenant_id="acme", feature="answer", model="gpt-4o",
                  provider="openai", prompt=messages, max_output_tokens=800) as call:
    call.record(client.chat.completions.create(model="gpt-4o", messages=messages))
"""

import importlib.metadata

from tokenledger.cache_keys import cache_key, normalize_input
from tokenledger.context_budget import DEFAULT_BUDGETS, ContextBudget, ContextReport
from tokenledger.contract.pricing import TokenCounts
from tokenledger.guard import BudgetGuard, Decision, Guardrails
from tokenledger.ledger import Ledger, LedgerClosedError, TopicNames
from tokenledger.tokens import count_tokens
from tokenledger.track import Call
from tokenledger.usage import Reading, UsageNotFoundError, parse_usage, read_usage


def _version(distribution: str = "tokenledger") -> str:
    """The installed distribution's version (pyproject.toml's, through the package
    metadata); ``0+unknown`` for a tree imported without being installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

__all__ = [
    "DEFAULT_BUDGETS",
    "BudgetGuard",
    "Call",
    "ContextBudget",
    "ContextReport",
    "Decision",
    "Guardrails",
    "Ledger",
    "LedgerClosedError",
    "TokenCounts",
    "TopicNames",
    "UsageNotFoundError",
    "__version__",
    "cache_key",
    "count_tokens",
    "normalize_input",
    "parse_usage",
    "read_usage",
    "Reading",
]

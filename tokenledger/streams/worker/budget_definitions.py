"""Budget definitions: every budget, read from the compacted budgets topic into a table
that every partition's tracker (budgets.py) and the admin CLI consult.

With public keys configured only records signed by the admin CLI's private keys count, and
a replayed older definition or removal never replaces a newer one. Retry budgets share the
topic (and its signature check and freshness) and are handed to their own table.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from pydantic import ValidationError

from tokenledger.contract.messages import Budget
from tokenledger.contract.names import error_message
from tokenledger.freshness import Freshness
from tokenledger.signing import Headers, PublicKeyring, Verdict, check
from tokenledger.streams.worker.retry_budgets import RetryBudgetConfigs

log = logging.getLogger(__name__)


class BudgetDefinitions:
    """Every budget definition, read from the compacted budgets topic (a global table).

    With public keys only records signed by one of their private keys count (the admin
    CLI's), and per scope only a record newer than the one held: a budget's time is its
    ``updated_at``, a removal's the signed issue time in its headers. A replayed older
    definition or removal is ignored (``replayed``)."""

    def __init__(self, topic: str = "", public_keys: PublicKeyring | None = None) -> None:
        self.by_scope: dict[str, Budget] = {}
        self.invalid = 0
        self.unauthorized = 0
        self.refusals: Counter[str] = Counter()
        """Refused records by reason."""
        self.changed: set[str] = set()
        self.topic = topic
        self.public_keys = public_keys
        self.freshness = Freshness("budget")
        self.retry_budgets = RetryBudgetConfigs()
        """Retry budget definitions: records of the same topic with a kind of their own."""

    @property
    def replayed(self) -> int:
        return self.freshness.replayed

    def verdict(self, key: bytes | None, value: bytes | None, headers: Headers) -> Verdict:
        """Whether a record's signature counts (the migration from HMAC widens this)."""
        return check(self.public_keys, self.topic, key, value, headers)

    def apply(self, key: bytes | None, value: bytes | None, headers: Headers = None) -> None:
        """Apply one record of the budgets topic; with public keys, only signed ones."""
        verdict = self.verdict(key, value, headers)
        if not verdict.ok:
            self.unauthorized += 1
            self.refusals[verdict.reason] += 1
            log.warning(
                "ignoring a budget record for %r (written by something other than "
                "tokenledger budget?): %s",
                key,
                verdict.reason,
            )
            return
        scope = key.decode(errors="replace") if key else ""
        if self.retry_budgets.apply(scope, value, self.freshness, verdict.issued_ms):
            return
        if value is None:
            if verdict.issued_ms is not None and not self.freshness.accept(
                scope, verdict.issued_ms
            ):
                return
            if self.by_scope.pop(scope, None) is not None:
                self.changed.add(scope)
            return
        try:
            budget = Budget.model_validate_json(value)
        except ValidationError as exc:
            self.invalid += 1
            log.warning(
                "ignoring an invalid budget for %r: %s", scope, error_message(exc.errors()[0])
            )
            return
        if not self.freshness.accept(budget.scope, _ms(budget.updated_at)):
            return
        self.by_scope[budget.scope] = budget
        self.changed.add(budget.scope)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)

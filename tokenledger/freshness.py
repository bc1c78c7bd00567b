"""Per scope, only newer records count: the defence against replayed budgets and signals.

A reader (a gateway's BudgetGuard, a worker's budget book) remembers the issue time of the
newest record it accepted for each scope, allow states and removals included. A record
whose issue time is not newer is a replay, or a duplicate: ignored, counted, logged once
per scope. Issue times are inside the signed bytes (tokenledger.signing), so a copy cannot
be made newer.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class Freshness:
    def __init__(self, what: str) -> None:
        self.what = what
        self.latest: dict[str, int] = {}
        self.replayed = 0
        self._logged: set[str] = set()

    def accept(self, scope: str, issued_ms: int) -> bool:
        """True (and remembered) when ``issued_ms`` is newer than what ``scope`` holds."""
        last = self.latest.get(scope)
        if last is not None and issued_ms <= last:
            self.replayed += 1
            if scope not in self._logged:
                self._logged.add(scope)
                log.warning(
                    "ignoring a replayed %s for %r: issued at %d ms, not newer than "
                    "the %d ms it holds (logged once per scope)",
                    self.what,
                    scope,
                    issued_ms,
                    last,
                )
            return False
        self.latest[scope] = issued_ms
        return True

    def next_after(self, scope: str, now_ms: int) -> int:
        """An issue time for a new record of ``scope`` that readers will accept."""
        return max(now_ms, self.latest.get(scope, 0) + 1)

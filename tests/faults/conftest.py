"""The fault suite prints its figures (events sent, stored, lost, double-counted, recovery
time) at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.pipeline import FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("fault suite figures")
    tr.write_line(
        f"{'fault':<44} {'sent':>7} {'stored':>7} {'lost':>5} {'double':>7} {'recovery s':>11}"
    )
    for row in FIGURES:
        tr.write_line(
            f"{row['fault']:<44} {row['sent']:>7} {row['stored']:>7} {row['lost']:>5} "
            f"{row['double_counted']:>7} {row['recovery_s']:>11}"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)

"""``with Ledger(...)`` and ``with BudgetGuard(...)``: leaving the block stops their
threads; a Ledger's events are flushed or, with no broker, waiting in the spill."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.helpers import factories
from tokenledger import BudgetGuard, Ledger, LedgerClosedError
from tokenledger.spill import Spill
from tokenledger.streams.local.broker import free_port


def threads_named(name: str) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == name}


def offline_ledger(spill_dir: Path) -> Ledger:
    return Ledger(
        "svc",
        bootstrap=f"127.0.0.1:{free_port()}",
        spill_dir=spill_dir,
        delivery_timeout_ms=500,
        retry_interval_s=0.1,
    )


def test_leaving_a_ledger_block_spills_what_kafka_did_not_take_and_stops_its_thread(
    tmp_path: Path,
) -> None:
    before = threads_named("tokenledger-ledger")
    events = [factories.usage(input_tokens=2000 + i) for i in range(30)]
    with offline_ledger(tmp_path) as ledger:
        (thread,) = threads_named("tokenledger-ledger") - before
        for e in events:
            ledger.emit(e)
    assert not thread.is_alive()
    assert ledger.spilled_waiting() == 30
    with pytest.raises(LedgerClosedError):
        ledger.emit(events[0])

    adopter = Spill(tmp_path)  # the next Ledger on this spill_dir replays exactly these
    values = [v for s in adopter.rotate() for _, _, v in adopter.read(s)]
    adopter.close()
    assert sorted(values) == sorted(e.model_dump_json().encode() for e in events)


def test_an_exception_in_a_ledger_block_still_closes_it_and_goes_on(tmp_path: Path) -> None:
    before = threads_named("tokenledger-ledger")
    with pytest.raises(KeyError, match="the caller's own"):
        with offline_ledger(tmp_path) as ledger:
            (thread,) = threads_named("tokenledger-ledger") - before
            ledger.emit(factories.usage())
            raise KeyError("the caller's own")
    assert not thread.is_alive()
    assert ledger.spilled_waiting() == 1


def test_a_budget_guard_block_starts_its_reader_and_stops_it_on_exit() -> None:
    before = threads_named("tokenledger-guard")
    guard = BudgetGuard(bootstrap=f"127.0.0.1:{free_port()}", public_keys=None)
    assert threads_named("tokenledger-guard") == before  # not started by the constructor
    with guard as entered:
        assert entered is guard
        (thread,) = threads_named("tokenledger-guard") - before
        assert thread.is_alive()
    assert not thread.is_alive()

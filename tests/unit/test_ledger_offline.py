"""A Ledger whose broker never answers: memory stays bounded and nothing is lost."""

from __future__ import annotations

import time
from pathlib import Path

from tests.helpers import factories
from tokenledger import Ledger
from tokenledger.spill import Spill
from tokenledger.streams.local.broker import free_port


def test_no_broker_spills_everything_with_bounded_memory(tmp_path: Path) -> None:
    ledger = Ledger(
        "svc",
        bootstrap=f"127.0.0.1:{free_port()}",
        spill_dir=tmp_path,
        queue_max=50,
        delivery_timeout_ms=500,
        retry_interval_s=0.1,
    )
    events = [factories.usage(input_tokens=2000 + i) for i in range(2000)]
    peak = 0
    for e in events:
        ledger.emit(e)
        peak = max(peak, len(ledger._pending))
    assert peak <= 50
    deadline = time.monotonic() + 30
    while ledger.stats()["spilled"] < 2000 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ledger.stats()["spilled"] == 2000
    assert ledger.stats()["delivered"] == 0
    assert not ledger.flush(timeout=0.5)  # honest: nothing could be delivered
    ledger.close(timeout=2)
    assert ledger.spilled_waiting() == 2000

    adopter = Spill(tmp_path)  # what the next Ledger on this spill_dir would replay
    values = [v for s in adopter.rotate() for _, _, v in adopter.read(s)]
    assert sorted(values) == sorted(e.model_dump_json().encode() for e in events)
    adopter.close()

"""The spill: order, torn lines, fsync policies, adoption of a dead process's segments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tokenledger.spill import Spill


def records(n: int, start: int = 0) -> list[tuple[str, bytes, bytes]]:
    return [("t.usage", b"acme", b'{"n":%d,"s":"a\\tb\\nc"}' % i) for i in range(start, start + n)]


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spill = Spill(tmp_path, fsync="always")
    spill.append(records(3))
    first = spill.rotate()
    spill.append(records(2, start=3))
    segments = spill.rotate()
    assert len(first) == 1 and len(segments) == 2 and segments[0] == first[0]
    got = [r for s in segments for r in spill.read(s)]
    assert got == records(5)
    assert spill.count() == 5
    for s in segments:
        spill.remove(s)
    assert spill.count() == 0
    spill.close()
    assert list(tmp_path.iterdir()) == []


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    spill = Spill(tmp_path)
    spill.append(records(2))
    (segment,) = spill.rotate()
    with open(segment, "ab") as fh:
        fh.write(b't.usage\tacme\t{"n":')  # a write cut short
    assert list(spill.read(segment)) == records(2)
    assert spill.corrupt_lines == 1
    spill.close()


def test_a_dead_process_segments_are_adopted(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from tokenledger.spill import Spill;"
        "s = Spill(Path(sys.argv[1]), fsync='never');"
        "s.append([('t.usage', b'acme', b'{\"n\":%d}' % i) for i in range(4)]);"
        "import os; os._exit(9)"  # dies without closing: like SIGKILL
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
    assert done.returncode == 9
    live = Spill(tmp_path)
    assert live.adopted == 1
    (segment,) = live.rotate()
    assert [r[2] for r in live.read(segment)] == [b'{"n":%d}' % i for i in range(4)]
    assert [p for p in tmp_path.iterdir() if p != live.dir] == []
    live.close()


def test_a_live_ledger_spill_is_not_taken(tmp_path: Path) -> None:
    first = Spill(tmp_path)
    first.append(records(1))
    second = Spill(tmp_path)
    assert second.adopted == 0 and first.count() == 1
    first.close()  # non-empty: stays for a later adopter
    third = Spill(tmp_path)
    assert third.adopted == 1 and third.count() == 1
    for s in (second, third):
        s.close()
    assert os.path.isdir(third.dir)

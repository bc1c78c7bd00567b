"""Whether the local broker still runs: a JVM's first thread can end before its others, so
/proc shows the process as a zombie while it still shuts down. Our own child is asked with
waitpid instead, and is gone only once it has exited and been reaped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.waiting import wait_for
from tokenledger.streams.local.broker import _alive

# The main thread ends (pthread_exit) while another runs on until the parent writes a line.
LEADER_ENDS_FIRST = """
import ctypes, sys, threading
threading.Thread(target=sys.stdin.readline).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_child_whose_first_thread_ended_is_alive_until_it_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LEADER_ENDS_FIRST], stdin=subprocess.PIPE)
    try:
        wait_for(lambda: _state(proc.pid) == "Z", 30, "the child's first thread to end")
        assert _alive(proc.pid)
        assert proc.poll() is None  # not reaped behind the handle's back
    finally:
        proc.communicate(b"\n", timeout=30)
    assert proc.returncode == 0
    assert not _alive(proc.pid)


def test_a_child_that_exited_is_reaped_and_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: _state(proc.pid) == "Z", 30, "the child to exit")
    assert not _alive(proc.pid)  # reaped: /proc no longer lists it
    assert not Path(f"/proc/{proc.pid}").exists()
    assert proc.poll() == 0  # the handle learns it has gone and drops quietly

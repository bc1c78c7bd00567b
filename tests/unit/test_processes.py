"""The child-process supervisor, on real children (`python -c`): an early exit is
reported with the end of its log, a child ignoring SIGTERM is killed after the grace
period, the last started stops first, readiness waits for its condition or log line."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tokenledger.streams.local.processes import ChildExitedError, NotReadyError, Supervisor

# A child that says "ready" once its SIGTERM handler is in place (so the tests stop it only
# after that), and on SIGTERM appends its name to a shared file and exits 0.
POLITE = """
import signal, sys, time
def leave(*_):
    with open(sys.argv[2], "a") as f:
        f.write(sys.argv[1] + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, leave)
print("ready", flush=True)
time.sleep(120)
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def test_a_child_that_exits_before_it_is_ready_is_reported_with_its_last_lines(
    tmp_path: Path,
) -> None:
    failing = "import sys\nprint('loading settings')\nsys.exit('no such file: keys.json')"
    with Supervisor(tmp_path) as children:
        with pytest.raises(ChildExitedError) as raised:
            children.start("edge", python(failing), ready=lambda: False)
    message = str(raised.value)
    assert message.startswith(f"edge exited with code 1; the end of {tmp_path / 'edge.log'}:")
    assert message.endswith("  loading settings\n  no such file: keys.json")
    assert raised.value.child.returncode == 1


def test_check_reports_a_child_that_died_while_running(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as children:
        children.start("worker", python(POLITE, "worker", str(tmp_path / "x")), ready_line="ready")
        sink = children.start("sink", python("import sys; print('boom'); sys.exit(4)"))
        sink.proc.wait(30)
        with pytest.raises(ChildExitedError, match=r"^sink exited with code 4; .*\n  boom$"):
            children.check()
        assert list(children.stop().items()) == [("sink", 4), ("worker", 0)]


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace_period(tmp_path: Path) -> None:
    with Supervisor(tmp_path, grace_s=0.5) as children:
        children.start("stubborn", python(STUBBORN), ready_line="ready")
        began = time.monotonic()
        codes = children.stop()
        took = time.monotonic() - began
    assert codes == {"stubborn": -signal.SIGKILL}
    assert 0.5 <= took < 5
    assert children.children == {}


def test_a_polite_child_is_not_killed(tmp_path: Path) -> None:
    with Supervisor(tmp_path, grace_s=30) as children:
        children.start("polite", python(POLITE, "polite", str(tmp_path / "x")), ready_line="ready")
        began = time.monotonic()
        assert children.stop() == {"polite": 0}
        assert time.monotonic() - began < 5


def test_the_last_started_stops_first_each_gone_before_the_next(tmp_path: Path) -> None:
    order = tmp_path / "order"
    with Supervisor(tmp_path) as children:
        for name in ("broker", "worker", "sink"):
            children.start(name, python(POLITE, name, str(order)), ready_line="ready")
        assert children.stop() == {"sink": 0, "worker": 0, "broker": 0}
    assert order.read_text().split() == ["sink", "worker", "broker"]


def test_named_children_stop_in_the_order_given_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    order = tmp_path / "order"
    with Supervisor(tmp_path) as children:
        for name in ("a", "b", "c"):
            children.start(name, python(POLITE, name, str(order)), ready_line="ready")
        assert list(children.stop("a", "c")) == ["a", "c"]
        assert order.read_text().split() == ["a", "c"]
        assert list(children.children) == ["b"] and children["b"].running()
    assert order.read_text().split() == ["a", "c", "b"]


def test_together_all_are_asked_at_once_with_one_grace_period(tmp_path: Path) -> None:
    with Supervisor(tmp_path, grace_s=1.0) as children:
        for name in ("w1", "w2", "w3"):
            children.start(name, python(STUBBORN), ready_line="ready")
        began = time.monotonic()
        codes = children.stop(together=True)
        took = time.monotonic() - began
    assert codes == {"w3": -signal.SIGKILL, "w2": -signal.SIGKILL, "w1": -signal.SIGKILL}
    assert 1.0 <= took < 2.5  # one by one would take 3 grace periods


def test_together_polite_children_all_leave_cleanly(tmp_path: Path) -> None:
    order = tmp_path / "order"
    with Supervisor(tmp_path, grace_s=30) as children:
        for name in ("w1", "w2"):
            children.start(name, python(POLITE, name, str(order)), ready_line="ready")
        assert children.stop(together=True) == {"w2": 0, "w1": 0}
    assert sorted(order.read_text().split()) == ["w1", "w2"]


def test_the_context_manager_stops_everything_on_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the test went wrong"), Supervisor(tmp_path) as kids:
        child = kids.start(
            "polite", python(POLITE, "polite", str(tmp_path / "x")), ready_line="ready"
        )
        raise RuntimeError("the test went wrong")
    assert child.returncode == 0 and kids.children == {}


def test_ready_waits_for_the_condition_and_the_log_line(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    slow = f"""
import pathlib, time
print("warming up", flush=True)
time.sleep(0.3)
pathlib.Path({str(flag)!r}).write_text("up")
print("listening on 127.0.0.1:1234", flush=True)
time.sleep(120)
"""
    with Supervisor(tmp_path) as children:
        edge = children.start("edge", python(slow), ready_line="listening on")
        assert "listening on 127.0.0.1:1234" in edge.output()
        other = children.start("other", python(slow), ready=flag.exists)
        assert other.running() and flag.read_text() == "up"


def test_not_ready_in_time_names_what_it_waited_for_and_leaves_it_running(
    tmp_path: Path,
) -> None:
    with Supervisor(tmp_path) as children:
        with pytest.raises(NotReadyError, match=r"^quiet was not ready within 0.3s \(a line"):
            children.start(
                "quiet", python(POLITE, "q", str(tmp_path / "x")), ready_line="never", timeout_s=0.3
            )
        assert children["quiet"].running()
    assert children.children == {}


def test_an_appended_log_reads_only_the_new_childs_lines(tmp_path: Path) -> None:
    log = tmp_path / "sink.log"
    with Supervisor(tmp_path) as children:
        first = children.start("sink", python("print('first run')"), log=log, append=True)
        first.proc.wait(30)
        assert children.stop("sink") == {"sink": 0}
        again = children.start("sink", python("print('second run')"), log=log, append=True)
        again.proc.wait(30)
    assert log.read_text() == "first run\nsecond run\n"
    assert (first.output(), again.output()) == ("first run\n", "second run\n")


def test_a_name_in_use_is_refused_and_kill_is_immediate(tmp_path: Path) -> None:
    with Supervisor(tmp_path, grace_s=60) as children:
        children.start("w1", python(STUBBORN), ready_line="ready")
        with pytest.raises(ValueError, match="w1 is already started"):
            children.start("w1", python(STUBBORN))
        began = time.monotonic()
        assert children.kill("w1") == -signal.SIGKILL
        assert time.monotonic() - began < 5
        restarted = children.start("w1", python(STUBBORN), ready_line="ready")
        assert restarted.running()
        assert children.stop(grace_s=0.2) == {"w1": -signal.SIGKILL}

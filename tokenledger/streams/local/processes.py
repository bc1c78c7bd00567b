"""Child processes owned by the process that started them: the demo's worker, sink and
notifier, a benchmark's workers and sinks, a test's edge service.

One way to start a child (a name, its argv and environment, a log file for its stdout and
stderr), to know it is ready (a condition or a line in its log, polled against a deadline:
never a sleep standing in for readiness), to notice one that died while it was needed
(reported with the last lines of its log), and to stop them: SIGTERM, then SIGKILL for one
still running after a grace period, the last started first.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess  # noqa: S404 - argv lists from the caller, never a shell
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tokenledger.backoff import delays, until
from tokenledger.streams.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

KILL_WAIT_S = 10.0
"""How long a SIGKILLed child may take to be reaped before that is an error."""
TAIL_BYTES = 64 * 1024


@dataclass
class Child:
    """One started process and the log its stdout and stderr go to, from ``offset`` up to
    ``end`` (set once it is stopped): children taking turns on one log each read only
    their own lines."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    offset: int = 0
    end: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; negative when a signal ended it."""
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """What it has written so far."""
        return self._read(self.offset)

    def tail(self, lines: int = 10) -> str:
        """Its last ``lines`` lines."""
        end = self._size() if self.end is None else self.end
        text = self._read(max(self.offset, end - TAIL_BYTES))
        return "\n".join(text.splitlines()[-lines:])

    def _size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def finish(self) -> int:
        """Once it has exited: where its lines end in the log; its exit code."""
        self.end = self._size()
        return self.proc.wait(0)

    def _read(self, start: int) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(start)
                data = f.read() if self.end is None else f.read(max(self.end - start, 0))
        except FileNotFoundError:
            return ""
        return data.decode(errors="replace")


class ChildExitedError(ServiceUnavailableError):
    """A child exited while it was still needed (before it was ready, or while running)."""

    def __init__(self, child: Child) -> None:
        self.child = child
        tail = child.tail()
        end = f"; the end of {child.log}:\n{textwrap.indent(tail, '  ')}" if tail else ""
        super().__init__(
            f"{child.name} exited with code {child.returncode}{end or f' ({child.log} is empty)'}"
        )


class NotReadyError(ServiceUnavailableError):
    """A child still running but not ready when its deadline passed."""

    def __init__(self, child: Child, timeout_s: float, what: str) -> None:
        self.child = child
        tail = textwrap.indent(child.tail(), "  ")
        super().__init__(
            f"{child.name} was not ready within {timeout_s:g}s ({what}); the end of "
            f"{child.log}:\n{tail}"
        )


class Supervisor:
    """Children started by name with a shared base environment; a context manager that
    stops whatever still runs on the way out, also when the way out is an error."""

    def __init__(
        self, logs: Path, env: Mapping[str, str] | None = None, *, grace_s: float = 30.0
    ) -> None:
        self.logs = logs
        self.env = dict(os.environ if env is None else env)
        self.grace_s = grace_s
        self.children: dict[str, Child] = {}
        """The children not stopped yet (running or exited by themselves), in start order."""

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        append: bool = False,
        ready: Callable[[], bool] | None = None,
        ready_line: str | None = None,
        timeout_s: float = 60.0,
    ) -> Child:
        """Start ``argv`` as ``name`` with the base environment and ``env`` over it, its
        output to ``log`` (``<logs>/<name>.log``; ``append`` keeps what is there); with
        ``ready`` or ``ready_line``, return once it is ready (see ``wait_until``)."""
        if name in self.children:
            raise ValueError(f"a child named {name} is already started")
        path = log or self.logs / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab" if append else "wb") as out:
            child = Child(
                name,
                subprocess.Popen(  # noqa: S603 - the caller's own commands
                    list(argv),
                    env={**self.env, **(env or {})},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                ),
                path,
                out.tell(),
            )
        self.children[name] = child
        if ready is not None:
            self.wait_until(name, ready, timeout_s)
        if ready_line is not None:
            self.wait_for_line(name, ready_line, timeout_s)
        return child

    def __getitem__(self, name: str) -> Child:
        return self.children[name]

    def wait_until(
        self,
        name: str,
        ready: Callable[[], bool],
        timeout_s: float = 60.0,
        what: str = "its readiness check",
        interval_s: float = 0.05,
    ) -> None:
        """Poll ``ready()`` until it holds. ChildExitedError when the child exits first,
        NotReadyError when ``timeout_s`` passes (the child is left running: stopping it is the
        caller's, or the context manager's)."""
        child = self.children[name]
        waits = until(time.monotonic() + timeout_s, delays(interval_s, factor=1))
        while True:
            if not child.running():
                raise ChildExitedError(child)
            if ready():
                return
            wait = next(waits, None)
            if wait is None:
                raise NotReadyError(child, timeout_s, what)
            time.sleep(wait)

    def wait_for_line(self, name: str, text: str, timeout_s: float = 60.0) -> None:
        """Until the child's log has a line containing ``text``."""
        child = self.children[name]
        self.wait_until(
            name,
            lambda: any(text in line for line in child.output().splitlines()),
            timeout_s,
            f"a line with {text!r}",
        )

    def check(self) -> None:
        """ChildExitedError for the first child, in start order, that is no longer running."""
        for child in self.children.values():
            if not child.running():
                raise ChildExitedError(child)

    def kill(self, name: str) -> int:
        """SIGKILL at once (a crash, for the tests and benchmarks that need one); its exit
        code. The child is forgotten."""
        child = self.children[name]
        if child.running():
            child.proc.send_signal(signal.SIGKILL)
        child.proc.wait(KILL_WAIT_S)
        del self.children[name]
        return child.finish()

    def stop(
        self, *names: str, grace_s: float | None = None, together: bool = False
    ) -> dict[str, int]:
        """Stop ``names`` in that order, or every child, the last started first: SIGTERM,
        then SIGKILL for one still running ``grace_s`` later (the supervisor's grace by
        default). One after the other, each gone before the next is asked (a child may
        need the ones started before it until it has stopped); or ``together``: all asked
        at once, one grace period for all (members of one consumer group, so that no
        partitions move while they leave). Their exit codes by name, also of children that
        had exited by themselves; stopped children are forgotten."""
        chosen = [self.children[n] for n in names] if names else [*self.children.values()][::-1]
        grace = self.grace_s if grace_s is None else grace_s
        codes: dict[str, int] = {}
        unreaped: list[subprocess.TimeoutExpired] = []
        if together:
            for child in chosen:
                _terminate(child)
        deadline = time.monotonic() + grace
        for child in chosen:
            if not together:
                _terminate(child)
                deadline = time.monotonic() + grace
            try:
                _reap(child, deadline, grace)
            except subprocess.TimeoutExpired as exc:  # not even SIGKILL ended it: say so,
                unreaped.append(exc)  # after the others are stopped
                continue
            codes[child.name] = child.finish()
            self.children.pop(child.name, None)
        if unreaped:
            raise unreaped[0]
        return codes


def _terminate(child: Child) -> None:
    if child.running():
        child.proc.send_signal(signal.SIGTERM)


def _reap(child: Child, deadline: float, grace_s: float) -> int:
    """Its exit code, SIGKILLing it when it is still running at ``deadline`` (``grace_s``
    after its SIGTERM)."""
    try:
        return child.proc.wait(max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %gs of SIGTERM; killing it", child.name, grace_s)
        child.proc.send_signal(signal.SIGKILL)
        return child.proc.wait(KILL_WAIT_S)

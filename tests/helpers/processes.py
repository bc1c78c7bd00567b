"""Stopping a test's subprocess the way its service expects: SIGTERM, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop(proc: subprocess.Popen[Any], grace: float = 30) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code (also of a process that
    had already exited)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode

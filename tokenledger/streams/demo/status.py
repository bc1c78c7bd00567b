"""The demo's live progress: one status line rewritten in place on a terminal, plain lines
(every few seconds) when stderr is a file or a pipe."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class StatusLine:
    def __init__(self, stream: TextIO | None = None, *, every_s: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s if every_s is not None else (0.5 if self.tty else 5.0)
        self._last = float("-inf")
        self._open = False  # a status line is on screen without its newline

    def say(self, message: str) -> None:
        """A message of its own, on its own line (below the status line)."""
        self._end_status()
        print(message, file=self.stream, flush=True)

    def due(self) -> bool:
        """Whether a status() now would be shown (so callers can skip computing it)."""
        return time.monotonic() - self._last >= self.every_s

    def status(self, text: str, *, force: bool = False) -> None:
        """Replace the status line; at most every ``every_s`` unless ``force``."""
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
            self._open = True
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        self._end_status()

    def _end_status(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False

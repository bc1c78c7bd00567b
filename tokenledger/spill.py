"""The local spill: where events wait while Kafka is away, in the order they were spilled.

Layout: ``<spill_dir>/<host>-<pid>-<nonce>/`` per live Ledger, holding a ``lock`` file
(flock held while the Ledger lives) and segment files named by creation time, so the sort
order of names is the replay order. One line per record: ``topic TAB key TAB value`` where
the value is the event's JSON (JSON escapes every tab and newline inside it).

Crash safety. Every record is one ``write()`` of a whole line, so a killed process leaves
whole lines in the page cache and loses nothing that was spilled; a torn last line (power
loss mid-write) is detected and skipped when read. What survives a host crash depends on
the fsync policy:

- ``always``: fsync after every write; nothing acknowledged to the spill is lost.
- ``interval`` (default): fsync at most every ``fsync_interval`` seconds (1 s): a host
  crash may lose the last second of spilled events.
- ``never``: the OS decides.

A directory whose lock is free belongs to a Ledger that died; the next Ledger on the same
spill_dir adopts its segments and replays them first.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Literal

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]
Record = tuple[str, bytes, bytes]
_SUFFIX = ".spill"


class Spill:
    def __init__(
        self, root: Path, fsync: FsyncPolicy = "interval", fsync_interval: float = 1.0
    ) -> None:
        self.root = root
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        root.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dir = root / name
        self.dir.mkdir()
        self._lock_file = open(self.dir / "lock", "w")  # noqa: SIM115 - held for our lifetime
        fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._mutex = threading.Lock()
        self._current: IO[bytes] | None = None
        self._current_path: Path | None = None
        self._current_records = 0
        self._dirty = False
        self._last_sync = time.monotonic()
        self.corrupt_lines = 0
        self.adopted = self._adopt_orphans()

    # -- writing -------------------------------------------------------------------------

    def append(self, records: Iterable[Record]) -> int:
        """Append records in order; returns how many. Thread-safe."""
        lines = b"".join(
            topic.encode() + b"\t" + key + b"\t" + value + b"\n" for topic, key, value in records
        )
        if not lines:
            return 0
        with self._mutex:
            if self._current is None:
                self._open_segment()
            assert self._current is not None  # noqa: S101 - opened just above
            self._current.write(lines)
            self._current.flush()  # one write() of whole lines: survives a killed process
            self._current_records += lines.count(b"\n")
            self._dirty = True
            if self.fsync == "always":
                os.fsync(self._current.fileno())
                self._dirty = False
        return lines.count(b"\n")

    def _open_segment(self) -> None:
        path = self.dir / f"{time.time_ns():020d}{_SUFFIX}"
        self._current = open(path, "ab")  # noqa: SIM115 - closed by rotate()/close()
        self._current_path = path
        self._current_records = 0

    def maybe_sync(self) -> None:
        """The ``interval`` policy's fsync, called periodically by the Ledger's worker."""
        if self.fsync != "interval" or not self._dirty:
            return
        if time.monotonic() - self._last_sync < self.fsync_interval:
            return
        with self._mutex:
            if self._current is not None:
                os.fsync(self._current.fileno())
            self._dirty = False
            self._last_sync = time.monotonic()

    # -- replaying -----------------------------------------------------------------------

    def current_empty(self) -> bool:
        with self._mutex:
            return self._current_records == 0

    def sealed_or_current(self) -> bool:
        """Is anything waiting to be replayed?"""
        return any(self.dir.glob(f"*{_SUFFIX}"))

    def _seal_current(self) -> None:
        """Make the current segment durable and closed; the next append opens another."""
        if self._current is not None:
            self._current.flush()
            os.fsync(self._current.fileno())
            self._current.close()
            self._current = None
            self._dirty = False

    def rotate(self) -> list[Path]:
        """Seal the current segment (new appends start another); all sealed, oldest first."""
        with self._mutex:
            self._seal_current()
            self._current_path = None
            self._current_records = 0
            return sorted(self.dir.glob(f"*{_SUFFIX}"))

    def read(self, segment: Path) -> Iterator[Record]:
        data = segment.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1]:
            log.warning("spill segment %s ends in a torn line; skipping it", segment.name)
            self.corrupt_lines += 1
        for line in lines[:-1]:
            parts = line.split(b"\t")
            if len(parts) != 3 or not parts[0]:
                self.corrupt_lines += 1
                log.warning("spill segment %s has a malformed line; skipping it", segment.name)
                continue
            yield parts[0].decode(), parts[1], parts[2]

    def remove(self, segment: Path) -> None:
        segment.unlink(missing_ok=True)

    def count(self) -> int:
        """Records waiting (sealed and current), for stats and tests."""
        total = 0
        for segment in sorted(self.dir.glob(f"*{_SUFFIX}")):
            with contextlib.suppress(OSError):
                total += segment.read_bytes().count(b"\n")
        return total

    # -- lifecycle -----------------------------------------------------------------------

    def _adopt_orphans(self) -> int:
        adopted = 0
        for other in sorted(self.root.iterdir()):
            if other == self.dir or not other.is_dir():
                continue
            lock_path = other / "lock"
            try:
                fh = open(lock_path, "a")  # noqa: SIM115
            except OSError:
                continue
            with fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live Ledger owns it
                for segment in sorted(other.glob(f"*{_SUFFIX}")):
                    segment.rename(self.dir / segment.name)
                    adopted += 1
                lock_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                other.rmdir()
        if adopted:
            log.info("adopted %d spill segment(s) of a previous process", adopted)
        return adopted

    def close(self) -> None:
        """Release the directory; an empty one is removed, a non-empty one waits for the
        next Ledger on this spill_dir to adopt it."""
        with self._mutex:
            self._seal_current()
            if self._current_path is not None and self._current_records == 0:
                self._current_path.unlink(missing_ok=True)
        empty = not any(self.dir.glob(f"*{_SUFFIX}"))
        if empty:
            (self.dir / "lock").unlink(missing_ok=True)
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
        if empty:
            with contextlib.suppress(OSError):
                self.dir.rmdir()

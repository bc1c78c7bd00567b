"""Where a Ledger's events go, Kafka or the spill, and when the spill is replayed.

Two states. *Direct*: events are handed to the producer. *Spilling*: events go to the local
spill (tokenledger/spill.py). Spilling starts when a delivery fails (after
``delivery_timeout_ms``) or the producer's queue is full, when callers fill the Ledger's
own queue, and at start when an earlier process left a spill behind. While spilling, every
new event is spilled too, so the spill, replayed oldest segment first, keeps the order in
which events were emitted.

A replay is due at ``next_replay``. A broker that does not answer, or a segment that is not
delivered whole, doubles the wait (from ``retry_interval`` up to ``MAX_BACKOFF_S``). A replay
that leaves the spill empty returns to direct; one that finds events spilled meanwhile goes
again at once.

Pure: no Kafka, no disk, no clock of its own (``now`` is passed in), so every transition is
unit-tested in microseconds. The producer thread (tokenledger/producer_thread.py) does the
I/O and reports here what happened.
"""

from __future__ import annotations

from collections.abc import Iterator

from tokenledger.backoff import delays

MAX_BACKOFF_S = 10.0


class SpillReplay:
    """The spill-and-replay state of one Ledger.

    Transitions run on the producer thread, except ``queue_full`` (a caller's thread) and
    ``hurry`` (``flush()``'s caller); each writes a few attributes, and a reader on another
    thread sees either the old or the new ``spilling``.
    """

    def __init__(self, retry_interval: float, *, spilling: bool = False) -> None:
        """``spilling``: start spilling, for a spill an earlier process left to replay."""
        self.retry_interval = retry_interval
        self.spilling = spilling
        self.next_replay = 0.0
        """When the next replay is due (the producer thread's monotonic clock)."""
        self._failed_waits = self._fresh_waits()
        """The waits after failed replays: twice ``retry_interval``, doubling each time."""

    def _fresh_waits(self) -> Iterator[float]:
        return delays(2 * self.retry_interval, cap=MAX_BACKOFF_S)

    def kafka_failed(self, now: float) -> bool:
        """A delivery failed or the producer's queue is full: spill from now on and try a
        replay after ``retry_interval``. True when this starts the spilling (worth a warning,
        once per outage)."""
        if self.spilling:
            return False
        self.spilling = True
        self._failed_waits = self._fresh_waits()
        self.next_replay = now + self.retry_interval
        return True

    def queue_full(self) -> bool:
        """Callers filled the Ledger's queue: spill from now on. The replay schedule stays as
        it is (the broker may well answer: the replay is tried when due). True when this
        starts the spilling."""
        if self.spilling:
            return False
        self.spilling = True
        return True

    def replay_due(self, now: float) -> bool:
        return self.spilling and now >= self.next_replay

    def hurry(self) -> None:
        """``flush()`` is waiting: replay at the producer thread's next turn, not after the
        backoff."""
        if self.spilling:
            self.next_replay = 0.0

    def replay_failed(self, now: float) -> None:
        """The broker did not answer, or a segment was not delivered whole: wait twice as
        long before the next try (at most ``MAX_BACKOFF_S``)."""
        self.next_replay = now + next(self._failed_waits)

    def replayed(self, spill_empty: bool) -> bool:
        """Every sealed segment was delivered. With nothing spilled meanwhile
        (``spill_empty``), back to direct: True. Otherwise replay again at the next turn."""
        if spill_empty:
            self.spilling = False
            self._failed_waits = self._fresh_waits()
            return True
        self.next_replay = 0.0
        return False

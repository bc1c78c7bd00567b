"""Waits between retries: exponential with a cap, optional jitter, an optional deadline.

One definition for every retry schedule (the SDK's spill replay, the sink's retries, the
worker's recovery, the notifier's and its receivers') so that "how long until the next attempt" reads the same everywhere and is
tested once. The schedule is pure: nothing here sleeps except ``retry``, and it takes the
sleep as an argument, so a loop waits the way it must (an Event a stop interrupts, a
consumer kept polling) and a test runs without waiting at all.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def delays(
    first: float,
    *,
    factor: float = 2.0,
    cap: float | None = None,
    retries: int | None = None,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """``first``, then each wait ``factor`` times the one before, none above ``cap``;
    endless unless ``retries`` bounds the count (a loop may bound itself by its attempts or
    with ``until``). ``factor=1`` is a fixed interval.

    With ``jitter`` j (0 to 1) each wait is drawn uniformly from [(1 - j) * d, d], d being
    the wait without jitter: clients that failed together spread out, and none waits
    longer than the plain schedule says. ``rng`` makes the draws repeatable."""
    if first < 0 or factor < 1 or not 0 <= jitter <= 1 or (cap is not None and cap < 0):
        raise ValueError("delays needs first >= 0, factor >= 1, 0 <= jitter <= 1, cap >= 0")
    draw = rng or random.Random()  # noqa: S311 - spreading retries, not a secret
    delay = first if cap is None else min(first, cap)
    given = 0
    while retries is None or given < retries:
        yield delay - draw.uniform(0, jitter * delay) if jitter else delay
        given += 1
        delay = delay * factor if cap is None else min(delay * factor, cap)


def until(
    deadline: float, waits: Iterable[float], clock: Callable[[], float] = time.monotonic
) -> Iterator[float]:
    """The waits of ``waits`` while ``deadline`` (a ``clock()`` reading) is ahead; a wait
    that would end past it is shortened to end there, so one last attempt is made at the
    deadline; nothing once it has passed."""
    for wait in waits:
        left = deadline - clock()
        if left <= 0:
            return
        yield min(wait, left)


def retry(
    action: Callable[[], T],
    waits: Iterable[float],
    *,
    retry_if: Callable[[Exception], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``action()``'s result; after an exception ``retry_if`` accepts, wait the next of
    ``waits`` and call it again. Raises the last exception when ``retry_if`` refuses it or
    the waits have run out (``waits`` bounds the retries: one attempt more than waits)."""
    pending = iter(waits)
    while True:
        try:
            return action()
        except Exception as exc:
            if not retry_if(exc):
                raise
            wait = next(pending, None)
            if wait is None:
                raise
            sleep(wait)

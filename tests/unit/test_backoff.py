"""The retry schedule every loop shares: exact waits, the cap, jitter within its bounds,
the deadline, and ``retry`` giving up when it should."""

from __future__ import annotations

import random
from itertools import islice

import pytest

from tokenledger.backoff import delays, retry, until


def test_doubles_up_to_the_cap() -> None:
    assert list(islice(delays(0.5, cap=2.0), 6)) == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert list(islice(delays(0.5, cap=30.0), 8)) == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_without_a_cap_it_is_first_times_two_to_the_retry() -> None:
    """What the receivers waited before: ``backoff_s * 2 ** (attempt - 1)``, exactly."""
    assert list(islice(delays(0.3), 12)) == [0.3 * 2 ** (n - 1) for n in range(1, 13)]


def test_a_cap_below_the_first_wait_holds_from_the_start() -> None:
    assert list(islice(delays(5.0, cap=2.0), 3)) == [2.0, 2.0, 2.0]


def test_retries_bound_the_count_and_factor_one_is_a_fixed_interval() -> None:
    assert list(delays(0.2, factor=1, retries=4)) == [0.2, 0.2, 0.2, 0.2]
    assert list(delays(1.0, retries=0)) == []
    assert list(delays(1.0, factor=3, retries=4)) == [1.0, 3.0, 9.0, 27.0]


def test_jitter_draws_below_the_plain_schedule_repeatably() -> None:
    plain = list(islice(delays(0.5, cap=4.0), 8))
    drawn = list(islice(delays(0.5, cap=4.0, jitter=0.5, rng=random.Random(7)), 8))
    again = list(islice(delays(0.5, cap=4.0, jitter=0.5, rng=random.Random(7)), 8))
    unit = random.Random(7)
    expected = [d * (1 - 0.5 * unit.random()) for d in plain]
    assert drawn == again
    assert drawn == pytest.approx(expected, rel=1e-12)
    assert all(d / 2 <= w <= d for w, d in zip(drawn, plain, strict=True))
    assert drawn != plain


def test_full_jitter_spans_zero_to_the_wait() -> None:
    drawn = list(islice(delays(1.0, factor=1, jitter=1.0, rng=random.Random(3)), 200))
    assert min(drawn) < 0.05 and max(drawn) > 0.95 and all(0 <= w <= 1.0 for w in drawn)


@pytest.mark.parametrize(
    "bad", [{"first": -1.0}, {"factor": 0.5}, {"jitter": 1.5}, {"jitter": -0.1}, {"cap": -1.0}]
)
def test_nonsense_is_refused(bad: dict[str, float]) -> None:
    args = {"first": 1.0, **bad}
    with pytest.raises(ValueError, match="delays needs"):
        next(delays(args.pop("first"), **args))  # type: ignore[arg-type]


class Clock:
    """A clock that moves only when the test waits."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_until_shortens_the_last_wait_to_the_deadline_then_stops() -> None:
    clock = Clock()
    waited = []
    for wait in islice(until(110.0, delays(1.0, cap=4.0), clock), 10):
        waited.append(wait)
        clock.sleep(wait)
    assert waited == [1.0, 2.0, 4.0, 3.0]
    assert clock.now == 110.0


def test_until_yields_nothing_once_the_deadline_has_passed() -> None:
    clock = Clock()
    assert list(islice(until(99.0, delays(1.0), clock), 5)) == []
    assert list(islice(until(100.0, delays(1.0), clock), 5)) == []


class Sleeps(list[float]):
    """The waits ``retry`` asked for; a runaway loop fails instead of spinning."""

    def __call__(self, seconds: float) -> None:
        assert len(self) < 10, "retried without a bound"
        self.append(seconds)


def test_retry_returns_after_transient_failures_waiting_each_delay() -> None:
    calls: list[int] = []
    slept = Sleeps()

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("not yet")
        return "done"

    got = retry(flaky, delays(0.5, cap=1.0), retry_if=lambda e: True, sleep=slept)
    assert (got, len(calls), slept) == ("done", 4, [0.5, 1.0, 1.0])


def test_retry_raises_the_last_error_when_the_waits_run_out() -> None:
    calls: list[int] = []
    slept = Sleeps()

    def down() -> None:
        calls.append(1)
        raise ConnectionError(f"attempt {len(calls)}")

    with pytest.raises(ConnectionError, match="attempt 3"):
        retry(down, delays(0.2, factor=1, retries=2), retry_if=lambda e: True, sleep=slept)
    assert (len(calls), slept) == (3, [0.2, 0.2])


def test_retry_raises_at_once_what_retry_if_refuses() -> None:
    calls: list[int] = []
    slept = Sleeps()

    def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        retry(
            broken,
            delays(0.2),
            retry_if=lambda e: isinstance(e, ConnectionError),
            sleep=slept,
        )
    assert (len(calls), slept) == (1, [])

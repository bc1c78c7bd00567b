"""Waiting on a real condition with a deadline: never a bare sleep standing in for
readiness."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_value(
    get: Callable[[], T], accept: Callable[[T], bool], what: str, timeout: float = 30
) -> T:
    """Poll ``get()`` until ``accept`` takes its value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {value}")
        time.sleep(0.02)

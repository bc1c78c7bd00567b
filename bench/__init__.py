"""Benchmarks: each ``bench/bench_*.py`` has ``run() -> list[Figure]``; ``python -m bench``
runs them all, prints a table and writes ``$TOKENLEDGER_HOME/bench.json``.

Figure names are stable (``area.figure_unit``) so runs compare over time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""


def sample_us(fn: Callable[[], object], samples: int = 2000, batch: int = 50) -> list[float]:
    """Per-call wall time in microseconds, ``samples`` times, each the mean of ``batch`` calls."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(samples):
        start = clock()
        for _ in range(batch):
            fn()
        out.append((clock() - start) / batch / 1000)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

"""The worker caps glibc's malloc arenas unless the environment already does: six threads
that each allocate share two arenas instead of getting one each (counted in glibc's own
``malloc_info`` report)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import ctypes, sys, tempfile, threading
from tokenledger.streams.worker.memory import limit_malloc_arenas
print(limit_malloc_arenas() if sys.argv[1] == "cap" else None)
libc = ctypes.CDLL(None)
libc.malloc.restype = libc.fopen.restype = ctypes.c_void_p
together = threading.Barrier(6)
def allocate():
    together.wait()
    libc.malloc(4096)
    together.wait()
threads = [threading.Thread(target=allocate) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    f = ctypes.c_void_p(libc.fopen(report.name.encode(), b"w"))
    libc.malloc_info(0, f)
    libc.fclose(f)
    print(open(report.name).read().count("<heap nr="))
"""


def arenas(mode: str, env: dict[str, str]) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, check=True
    )
    said, count = done.stdout.split()
    return said, int(count)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}


def test_threads_share_two_arenas() -> None:
    assert arenas("cap", clean_env()) == ("True", 2)
    _, uncapped = arenas("none", clean_env())
    assert uncapped > 2  # what the cap prevents: an arena per thread


def test_the_environment_wins() -> None:
    assert arenas("cap", {**clean_env(), "MALLOC_ARENA_MAX": "3"}) == ("False", 3)

"""Running the `tokenledger` command as a user would: a subprocess with its own
environment, output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")


def tl(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`tokenledger ARGS` under ``env``; never raises on a non-zero exit."""
    return subprocess.run(  # noqa: S603 - our own command
        [TOKENLEDGER, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int, starts: str) -> None:
    """The command failed with ``code`` and said so in one line, `tokenledger: ` + ``starts``,
    with no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"tokenledger: {starts}"), lines[0]
    assert "Traceback" not in done.stderr

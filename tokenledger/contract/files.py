"""Where the contract's and the server's files are.

A source checkout keeps them in the repository's top-level folders (`schemas/json`,
`schemas/prices`, `clickhouse/`); a wheel carries copies inside the package, placed by
`[tool.hatch.build.targets.wheel.force-include]` in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
CHECKOUT = PACKAGE.parent


def shipped(inside_package: str, in_checkout: str) -> Path:
    """The wheel's copy (a path under tokenledger/) if installed, else the checkout's."""
    packaged = PACKAGE / inside_package
    return packaged if packaged.exists() else CHECKOUT / in_checkout

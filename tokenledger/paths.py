"""Where tokenledger keeps local state, from the environment, in one place.

``TOKENLEDGER_HOME`` (default ``./.tokenledger``): broker data, embedded ClickHouse, spill.
``TOKENLEDGER_CACHE`` (default ``<home>/cache``): Kafka jars, tiktoken ranks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("TOKENLEDGER_HOME") or ".tokenledger")


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("TOKENLEDGER_CACHE") or home_dir(env) / "cache")

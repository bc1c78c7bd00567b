"""Token counting with tiktoken, offline.

tiktoken reads its rank files from ``$TIKTOKEN_CACHE_DIR``; `tokenledger setup` installs
them (verified) under ``<TOKENLEDGER_CACHE>/tiktoken``. When the variable is unset and that
folder exists, it is used, so counting never reaches for the network by surprise.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tokenledger.paths import cache_dir

if TYPE_CHECKING:
    import tiktoken

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def default_cache_dir() -> Path:
    return cache_dir() / "tiktoken"


def _use_local_ranks() -> None:
    if "TIKTOKEN_CACHE_DIR" not in os.environ and default_cache_dir().is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(default_cache_dir().resolve())


def encoding_name(model: str) -> str:
    """o200k_base for the GPT-4o / 4.1 / 5 and o-series families, else cl100k_base.

    Models of other providers get cl100k_base as an estimate: counts are used for budget
    reservations and context budgets, and the provider's usage report settles the bill.
    """
    return "o200k_base" if model.startswith(_O200K_PREFIXES) else "cl100k_base"


@lru_cache(maxsize=4)
def encoding(name: str) -> tiktoken.Encoding:
    import tiktoken

    _use_local_ranks()
    return tiktoken.get_encoding(name)


def count_tokens(text: str, model: str) -> int:
    return len(encoding(encoding_name(model)).encode(text, disallowed_special=()))

"""Token counting with tiktoken, offline, and estimates that never block or raise.

tiktoken reads its rank files from ``$TIKTOKEN_CACHE_DIR``; `tokenledger setup` installs
them (verified) under ``<TOKENLEDGER_CACHE>/tiktoken``. When the variable is unset and that
folder exists, it is used. The SDK never asks tiktoken to download anything: without the
rank files it estimates (``HEURISTIC_CHARS_PER_TOKEN``) and says so once in the log.

Two entry points:
- ``estimate_tokens`` (budget reservations in ``track()``): never blocks, never raises.
  Encodings load in a background thread started by ``warm_up()`` (a Ledger calls it);
  until they are loaded, or when they cannot be, the heuristic answers.
- ``count_tokens`` (context budgets, explicit counting): the exact count, loading the
  encoding on first use (a local file read); the heuristic only when the ranks are missing.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tokenledger.paths import cache_dir

if TYPE_CHECKING:
    import tiktoken

log = logging.getLogger(__name__)

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
HEURISTIC_CHARS_PER_TOKEN = 4
"""Without tiktoken's ranks: one token per 4 characters (OpenAI's rule of thumb for English
text), rounded up. A reservation is an estimate either way; the usage report settles it."""
RANK_FILES = {
    "cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    "o200k_base": "fb374d419588a4632f3f557e76b4b70aebbca790",
}
"""tiktoken's cache file of each encoding (the sha1 of its download address)."""
LOAD_ERRORS = (OSError, ValueError, ImportError)


class EncodingUnavailableError(LookupError):
    """The rank files of an encoding are not installed; the message says how to install."""


def default_cache_dir() -> Path:
    return cache_dir() / "tiktoken"


def rank_dir() -> Path:
    return Path(os.environ.get("TIKTOKEN_CACHE_DIR") or default_cache_dir())


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
    """The encoding from the local rank files (never a download)."""
    if not (rank_dir() / RANK_FILES[name]).is_file():
        raise EncodingUnavailableError(
            f"tiktoken's {name} ranks are not in {rank_dir()}: run `tokenledger setup` or "
            "point TIKTOKEN_CACHE_DIR at them"
        )
    import tiktoken

    _use_local_ranks()
    return tiktoken.get_encoding(name)


def heuristic_tokens(text: str) -> int:
    return math.ceil(len(text) / HEURISTIC_CHARS_PER_TOKEN)


_ready: dict[str, tiktoken.Encoding] = {}
_said: set[str] = set()
_lock = threading.Lock()
_loader: threading.Thread | None = None


def _say_once(name: str, why: str) -> None:
    if name not in _said:
        _said.add(name)
        log.warning(
            "token counts for %s are estimated (%d characters a token): %s",
            name,
            HEURISTIC_CHARS_PER_TOKEN,
            why,
        )


def _load_all() -> None:
    for name in RANK_FILES:
        try:
            _ready[name] = encoding(name)
        except EncodingUnavailableError as exc:
            _say_once(name, str(exc))
        except LOAD_ERRORS as exc:
            _say_once(name, f"{type(exc).__name__}: {exc}")


def warm_up() -> None:
    """Load the encodings in a background thread, once per process."""
    global _loader
    with _lock:
        if _loader is None:
            _loader = threading.Thread(target=_load_all, name="tokenledger-tiktoken", daemon=True)
            _loader.start()


def wait_loaded(timeout: float) -> bool:
    """Start loading if needed and wait up to ``timeout`` seconds for it to finish: for a
    service (or a test) that wants exact counts from its first call. True when every
    encoding whose ranks are installed is loaded."""
    warm_up()
    loader = _loader
    if loader is not None:
        loader.join(timeout)
    return loader is not None and not loader.is_alive()


def estimate_tokens(text: str, model: str) -> int:
    """Tokens of ``text``: exact once the encoding is loaded, else the heuristic. Never
    blocks on loading, never raises."""
    loaded = _ready.get(encoding_name(model))
    if loaded is None:
        warm_up()
        return heuristic_tokens(text)
    return len(loaded.encode(text, disallowed_special=()))


def count_tokens(text: str, model: str) -> int:
    """Tokens of ``text``, exactly when the ranks are installed (loading them on first use)."""
    name = encoding_name(model)
    try:
        return len(encoding(name).encode(text, disallowed_special=()))
    except EncodingUnavailableError as exc:
        _say_once(name, str(exc))
    except LOAD_ERRORS as exc:
        _say_once(name, f"{type(exc).__name__}: {exc}")
    return heuristic_tokens(text)

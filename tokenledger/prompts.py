"""The prompt as it travels in a request event (only with ``Ledger(include_prompts=True)``).

The worker refuses messages over 64 KiB (tokenledger/streams/records.py), and a refused request event
is a lost reservation. So the text is cut to ``PROMPT_MAX_BYTES`` of the message: its UTF-8
bytes as they appear in the JSON (escapes such as ``\\"`` and ``\\n`` included), cut on a
character boundary and ending with ``TRUNCATED``, which says how much was kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

PROMPT_MAX_BYTES = 32 * 1024
"""Room for the prompt in a request event; the rest of the event takes under 3 KiB."""

TRUNCATED = " [truncated: {kept} of {total} bytes]"
"""Appended to a cut prompt: the UTF-8 bytes kept of the prompt's total (ASCII, no escapes)."""

Prompt = str | Sequence[Mapping[str, Any]]


def prompt_text(prompt: Prompt | None) -> str | None:
    """The prompt as one string: a chat prompt as its JSON."""
    if prompt is None:
        return None
    if isinstance(prompt, str):
        return prompt
    return json.dumps(list(prompt), ensure_ascii=False, default=str)


def prompt_field(prompt: Prompt | None) -> str | None:
    """A request event's ``prompt_text``: the prompt, cut to fit."""
    text = prompt_text(prompt)
    return None if text is None else fit(text)


def _json_bytes(text: str) -> int:
    """How many bytes ``text`` takes inside a JSON string."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def fit(text: str, limit: int = PROMPT_MAX_BYTES) -> str:
    """``text`` if it takes at most ``limit`` bytes in the message, else a prefix of it
    (whole characters) that fits together with the TRUNCATED marker. A lone surrogate,
    which cannot be sent, becomes ``?``."""
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode()
        raw = text.encode()
    size = _json_bytes(text)
    if size <= limit:
        return text
    total = len(raw)
    budget = max(0, limit - len(TRUNCATED.format(kept=total, total=total)))
    head = text
    while size > budget:  # shrink in proportion to the escapes seen, at least one byte
        raw = raw[: min(len(raw) - 1, len(raw) * budget // size)]
        head = raw.decode(errors="ignore")  # drops a character cut in two
        raw = head.encode()
        size = _json_bytes(head)
    return head + TRUNCATED.format(kept=len(raw), total=total)

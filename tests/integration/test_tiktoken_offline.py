"""tiktoken counts offline from the rank files `tokenledger setup` installed."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_encodings_load_without_any_download(monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken
    import tiktoken.load
    import tiktoken.registry

    def no_network(url: str) -> bytes:
        raise AssertionError(f"tiktoken tried to download {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    from tokenledger import tokens

    tokens.encoding.cache_clear()
    assert tokens.count_tokens("hello world", "gpt-4o") == 2
    assert tokens.count_tokens("hello world", "claude-sonnet-4-5") == 2
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tiktoken.get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert tokens.encoding_name("gpt-4o-mini") == "o200k_base"
    assert tokens.encoding_name("claude-sonnet-4-5") == "cl100k_base"

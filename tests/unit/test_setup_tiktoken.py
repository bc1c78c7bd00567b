"""Conversion of the npm package's rank JSON to tiktoken's file format."""

from __future__ import annotations

import json
from pathlib import Path

from tokenledger.streams.local.tiktoken_ranks import RANK_FILES, installed, ranks_from_npm_json


def test_lines_with_offsets_become_rank_lines() -> None:
    doc = json.dumps({"bpe_ranks": "! 0 IQ== Ig==\n! 7 aGk= eW8=\n", "special_tokens": {}})
    assert ranks_from_npm_json(doc.encode()) == b"IQ== 0\nIg== 1\naGk= 7\neW8= 8\n"


def test_installed_requires_every_file_with_its_pinned_hash(tmp_path: Path) -> None:
    assert not installed(tmp_path)
    for f in RANK_FILES:
        (tmp_path / f.cache_name).write_bytes(b"not the ranks")
    assert not installed(tmp_path)

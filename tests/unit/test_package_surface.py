"""What a service gets from `pip install tokenledger`: the version it reports, the
py.typed marker that lets its type checker read the SDK's annotations, and a ``track()``
whose keywords say themselves."""

from __future__ import annotations

import importlib.metadata
import inspect
from pathlib import Path

import pytest

import tokenledger
from tests.helpers.paths import PACKAGE
from tests.helpers.wheel import build_wheel, wheel_files
from tokenledger import Call, Ledger


def test_the_version_is_the_installed_distributions() -> None:
    assert tokenledger.__version__ == importlib.metadata.version("tokenledger")


def test_the_version_is_read_from_the_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", {"tokenledger": "7.1.2"}.__getitem__)
    assert tokenledger._version() == "7.1.2"


def test_a_tree_that_is_not_installed_reports_an_unknown_version() -> None:
    assert tokenledger._version("tokenledger-never-installed") == "0+unknown"


def test_the_wheel_carries_the_typing_marker(tmp_path: Path) -> None:
    assert (PACKAGE / "py.typed").is_file()
    names = set(wheel_files(build_wheel(tmp_path)))
    assert {"tokenledger/py.typed", "tokenledger/__init__.py"} <= names


def test_track_takes_the_keywords_of_a_call_and_describes_each() -> None:
    track = inspect.signature(Ledger.track).parameters
    call = inspect.signature(Call.__init__).parameters
    assert [(p.name, p.kind, p.default, p.annotation) for p in track.values()] == [
        (p.name, p.kind, p.default, p.annotation) for p in call.values() if p.name != "ledger"
    ]
    doc = inspect.getdoc(Ledger.track) or ""
    assert [name for name in track if name != "self" and f"``{name}``" not in doc] == []

"""The tree shows the data flow: one import name, the SDK stands alone, every stage is a
folder docs/layout.md names, and no module grows past what a reader takes in at one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import CONTRACT, PACKAGE, ROOT, SERVER, sdk_modules

STAGES = ("edge", "local", "worker", "sink", "alerts", "analytics", "admin", "demo", "cli")
MODULE_CAP = 400


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_one_import_name() -> None:
    """Only tokenledger/ holds code: no other top-level package a service's own
    `schemas.py` or `streams/` could shadow or be shadowed by."""
    top = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top - {"tests", "bench"} == {"tokenledger"}
    assert list((ROOT / "schemas").rglob("*.py")) == []
    assert not (ROOT / "streams").exists()


def test_the_sdk_imports_only_the_contract() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sdk_modules()
        for name in _imports(path)
        if _is_under(name, "tokenledger.streams")
    }
    assert offenders == set()
    probe = (
        "import sys, tokenledger; "
        "print(sorted({m for m in sys.modules if m.startswith('tokenledger.streams')}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert loaded == "[]"


def test_the_contract_imports_neither_the_sdk_nor_the_server() -> None:
    sdk = {f"tokenledger.{p.stem}" for p in sdk_modules() if p.stem != "__init__"}
    for path in CONTRACT.rglob("*.py"):
        names = _imports(path)
        assert {n for n in names if _is_under(n, "tokenledger.streams")} == set(), path
        assert {n for n in names if any(_is_under(n, m) for m in sdk)} == set(), path
        assert "tokenledger" not in names, path


def test_every_stage_is_a_package_the_docs_map() -> None:
    layout = (ROOT / "docs" / "layout.md").read_text()
    packages = {p.name for p in SERVER.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(STAGES)
    for stage in STAGES:
        assert f"`tokenledger/streams/{stage}/`" in layout, stage
        doc = ast.get_docstring(ast.parse((SERVER / stage / "__init__.py").read_text()))
        assert doc and len(doc) > 20, f"tokenledger/streams/{stage}/__init__.py says what it does"


def test_modules_stay_readable_in_one_sitting() -> None:
    """The cap holds on the formatter's layout: `make lint` fails on unformatted code."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MODULE_CAP
    }
    assert long == {}


def test_the_formatter_owns_the_layout() -> None:
    skipped = {
        f"{p.relative_to(ROOT)}:{i}"
        for folder in ("tokenledger", "tests", "bench")
        for p in (ROOT / folder).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "fmt: " + "skip" in line or "fmt: " + "off" in line
    }
    assert skipped == set()


def test_no_test_module_imports_another() -> None:
    """Shared test code lives in tests/helpers; test modules stand alone."""
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "tests").rglob("*.py")
        for name in _imports(path)
        if name.startswith("tests.") and not name.startswith("tests.helpers")
    }
    assert offenders == set()

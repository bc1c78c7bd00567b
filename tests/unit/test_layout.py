"""The tree shows the data flow: the SDK stands alone, every stage is a folder the README
names, and no module grows past what a reader takes in at one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import ROOT

STAGES = ("edge", "local", "worker", "sink", "alerts", "analytics", "admin", "demo", "cli")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_sdk_imports_only_the_contract() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "tokenledger").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] == "streams"
    }
    assert offenders == set()
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, tokenledger; "
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'streams', 'schemas'}))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.strip()  # fmt: skip
    assert loaded == "['schemas']"


def test_the_contract_imports_neither_the_sdk_nor_the_server() -> None:
    for path in (ROOT / "schemas").rglob("*.py"):
        assert {n.split(".")[0] for n in _imports(path)} & {"streams", "tokenledger"} == set(), path


def test_every_stage_is_a_package_the_readme_maps() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    packages = {p.name for p in (ROOT / "streams").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(STAGES)
    for stage in STAGES:
        assert f"`streams/{stage}/`" in section, stage
        doc = ast.get_docstring(ast.parse((ROOT / "streams" / stage / "__init__.py").read_text()))
        assert doc and len(doc) > 20, f"streams/{stage}/__init__.py says what the stage does"


def test_modules_stay_readable_in_one_sitting() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for folder in ("tokenledger", "schemas", "streams")
        for p in (ROOT / folder).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def test_no_test_module_imports_another() -> None:
    """Shared test code lives in tests/helpers; test modules stand alone."""
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "tests").rglob("*.py")
        for name in _imports(path)
        if name.startswith("tests.") and not name.startswith("tests.helpers")
    }
    assert offenders == set()

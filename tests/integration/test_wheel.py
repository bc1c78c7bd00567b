"""The wheel a service installs: one import package, its data files inside, no collision with
a service's own `schemas` or `streams`, and a `tokenledger` command that finds the packaged
prices, JSON Schema and migrations without the source tree."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.wheel import Installed, build_wheel, install, wheel_files

pytestmark = pytest.mark.integration

SERVICE_LAYOUTS = {
    "module": {
        "schemas.py": 'OWNER = "the service\'s schemas.py"\n',
        "streams/__init__.py": 'OWNER = "the service\'s streams package"\n',
    },
    "package": {
        "schemas/__init__.py": 'OWNER = "the service\'s schemas package"\n',
        "streams/__init__.py": 'raise ImportError("the service\'s streams package refuses")\n',
    },
}
"""A service's own top-level names, as a module or a package; each says whose it is."""

PROBE = """
import json, sys
import tokenledger
streams_loaded = sorted(m for m in sys.modules if m.startswith("tokenledger.streams"))
from tokenledger import Ledger, BudgetGuard, TokenCounts
import tokenledger.contract.pricing, tokenledger.contract.messages, tokenledger.contract.export
import tokenledger.contract.price_file, tokenledger.streams.config, tokenledger.streams.cli.main
foreign = sorted(m for m in ("schemas", "streams") if m in sys.modules)
owners = {}
for name in ("schemas", "streams"):
    try:
        module = __import__(name)
        owners[name] = [module.OWNER, module.__file__]
    except ImportError as exc:
        owners[name] = [str(exc), None]
print(json.dumps({
    "tokenledger": tokenledger.__file__,
    "streams_loaded": streams_loaded,
    "foreign": foreign,
    "owners": owners,
    "prices": str(tokenledger.contract.price_file.BUNDLED_FILE),
    "json": str(tokenledger.contract.export.JSON_DIR),
    "sql": str(tokenledger.streams.config.sql_root()),
}))
"""
"""Run with `python -c` from a service's folder, which puts that folder first on sys.path."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("installed")
    yield install(wheel, base / "venv", base / "home")


def _checkout_names(folder: str, pattern: str) -> list[str]:
    return sorted(p.name for p in (ROOT / folder).glob(pattern))


def test_the_wheel_holds_one_import_package_and_its_data(wheel: Path) -> None:
    files = wheel_files(wheel)
    tops = {path.split("/")[0] for path in files}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert tops == {"tokenledger", f"tokenledger-{version}.dist-info"}
    assert "tokenledger/contract/prices/default.json" in files
    packaged_json = sorted(
        path.removeprefix("tokenledger/contract/json/")
        for path in files
        if path.startswith("tokenledger/contract/json/")
    )
    assert packaged_json == _checkout_names("schemas/json", "*.json")
    migrations = sorted(
        path.removeprefix("tokenledger/streams/_sql/migrations/")
        for path in files
        if path.startswith("tokenledger/streams/_sql/migrations/")
    )
    assert migrations == _checkout_names("clickhouse/migrations", "*.sql")
    assert len(migrations) >= 14


@pytest.mark.parametrize("layout", sorted(SERVICE_LAYOUTS))
def test_a_service_keeps_its_own_schemas_and_streams(
    installed: Installed, tmp_path: Path, layout: str
) -> None:
    for relative, text in SERVICE_LAYOUTS[layout].items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    done = installed.run([installed.python, "-c", PROBE], tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    package = installed.site_packages / "tokenledger"
    assert seen["tokenledger"] == str(package / "__init__.py")
    assert seen["streams_loaded"] == [], "import tokenledger loads no server module"
    assert seen["foreign"] == [], "tokenledger imported a top-level schemas or streams"
    if layout == "module":
        assert seen["owners"] == {
            "schemas": ["the service's schemas.py", str(tmp_path / "schemas.py")],
            "streams": ["the service's streams package", str(tmp_path / "streams/__init__.py")],
        }
    else:
        assert seen["owners"] == {
            "schemas": ["the service's schemas package", str(tmp_path / "schemas/__init__.py")],
            "streams": ["the service's streams package refuses", None],
        }
    assert seen["prices"] == str(package / "contract/prices/default.json")
    assert seen["json"] == str(package / "contract/json")
    assert seen["sql"] == str(package / "streams/_sql")


def test_the_command_runs_on_the_packaged_files(installed: Installed, tmp_path: Path) -> None:
    package = installed.site_packages / "tokenledger"
    helped = installed.run([installed.tokenledger, "--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: tokenledger [-h] [-q] COMMAND ...\n")

    checked = installed.run([installed.tokenledger, "prices", "check"], tmp_path)
    assert checked.returncode == 0, checked.stderr
    bundled = package / "contract/prices/default.json"
    assert checked.stdout.startswith(f"price file {bundled} (bundled): 0 model entries,")

    schemas = installed.run([installed.tokenledger, "schemas", "export", "--check"], tmp_path)
    assert schemas.returncode == 0, schemas.stderr
    assert schemas.stdout == f"JSON Schema in {package / 'contract/json'} matches the models\n"

    status = installed.run([installed.tokenledger, "migrate", "--status"], tmp_path)
    assert status.returncode == 0, status.stderr
    expected = [f"pending  {name}" for name in _checkout_names("clickhouse/migrations", "*.sql")]
    assert status.stdout.splitlines() == expected

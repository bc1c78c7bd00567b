"""The wheel as `pip install` gives it to a user: built from this checkout with hatchling,
installed into a virtualenv of its own, run from a folder outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.paths import ROOT

CLEARED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
"""Variables that would put the checkout or the dev virtualenv in front of the wheel."""
OFFLINE = ("--no-deps", "--no-index", "--disable-pip-version-check", "-q")
"""pip options: the wheel alone, nothing looked up or downloaded."""


def _checked(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run a setup step; its stdout, or a failure that shows what the step printed."""
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def build_wheel(out: Path) -> Path:
    """`pip wheel` of the checkout, offline: hatchling is in the running virtualenv (the
    `test` extra), so no isolated build environment has to be downloaded."""
    build = [sys.executable, "-m", "pip", "wheel", *OFFLINE, "--no-build-isolation"]
    _checked([*build, "-w", str(out), str(ROOT)])
    (wheel,) = out.glob("tokenledger-*.whl")
    return wheel


def wheel_files(wheel: Path) -> list[str]:
    """Every file path the wheel holds, as installed under site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        return sorted(info.filename for info in archive.infolist() if not info.is_dir())


@dataclass(frozen=True)
class Installed:
    """A fresh virtualenv with the wheel installed, and an environment to run it in."""

    venv: Path
    site_packages: Path
    env: dict[str, str]

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def tokenledger(self) -> str:
        return str(self.venv / "bin" / "tokenledger")

    def run(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        """``args`` from ``cwd`` under the venv's environment; never raises on an exit code."""
        return subprocess.run(
            args, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=180, check=False
        )


def install(wheel: Path, venv: Path, home: Path) -> Installed:
    """A new virtualenv holding the wheel alone; its dependencies come from the running one.

    The wheel goes in with `--no-deps` (nothing is downloaded) and a `.pth` file in the
    fresh site-packages names the running virtualenv's site-packages. That is faithful to a
    real install: each line of a `.pth` file is a plain path entry appended to sys.path
    after the fresh site-packages, and `site` processes `.pth` files only in site
    directories, never in a directory a `.pth` line adds. So the dev virtualenv's own
    editable-install `.pth`, which puts the checkout on sys.path, is not read: `tokenledger`
    can only be the wheel's copy (the tests check that it is), while pydantic, chdb and the
    other dependencies import as pip would have installed them.
    """
    _checked([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(_checked([python, "-c", probe]).strip())
    ours = sysconfig.get_paths()
    lines = dict.fromkeys([ours["purelib"], ours["platlib"]])  # the same folder on most systems
    (site_packages / "_dependencies.pth").write_text("".join(f"{p}\n" for p in lines))
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env = {k: v for k, v in env.items() if not k.startswith("TOKENLEDGER_")}
    env.update(TOKENLEDGER_HOME=str(home), PYTHONNOUSERSITE="1")
    _checked([python, "-m", "pip", "install", *OFFLINE, str(wheel)], env)
    return Installed(venv, site_packages, env)

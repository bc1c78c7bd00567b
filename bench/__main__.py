"""Run every benchmark module in bench/ and record the figures.

``python -m bench [name ...]`` runs the modules whose names contain one of the words (all by
default), each in a process of its own: a module's leftovers (an embedded ClickHouse still
merging ten million rows, RocksDB's threads, the heap) must not slow the next one's
figures.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench import Figure


def run_module(name: str, out: Path) -> None:
    """Run ``bench.<name>`` in this process and write its figures to ``out`` as JSON."""
    module = importlib.import_module(f"bench.{name}")
    out.write_text(json.dumps([asdict(f) for f in module.run()]))


def main() -> int:
    if sys.argv[1:2] == ["--module"]:
        run_module(sys.argv[2], Path(sys.argv[3]))
        return 0
    only = sys.argv[1:]
    here = Path(__file__).parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if only:
        names = [n for n in names if any(o in n for o in only)]
    figures: list[Figure] = []
    failed = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "figures.json"
            done = subprocess.run(
                [sys.executable, "-m", "bench", "--module", name, str(out)],  # noqa: S603
                check=False,
            )
            if done.returncode != 0:
                failed.append(name)
                continue
            figures.extend(Figure(**f) for f in json.loads(out.read_text()))
    width = max((len(f.name) for f in figures), default=10)
    print(f"\n{'figure':<{width}}  {'value':>14}  unit     note")
    for f in figures:
        print(f"{f.name:<{width}}  {f.value:>14,.3f}  {f.unit:<8} {f.note}")
    home = Path(os.environ.get("TOKENLEDGER_HOME") or ".tokenledger")
    home.mkdir(parents=True, exist_ok=True)
    out = home / "bench.json"
    recorded = json.loads(out.read_text()) if out.exists() else {}
    recorded.update({f.name: {"value": f.value, "unit": f.unit} for f in figures})
    out.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {len(figures)} figures to {out}", file=sys.stderr)
    if failed:
        print(f"failed (no figures recorded): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

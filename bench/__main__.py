"""Run every benchmark module in bench/ and record the figures."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

from bench import Figure


def main() -> int:
    only = sys.argv[1:]
    here = Path(__file__).parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if only:
        names = [n for n in names if any(o in n for o in only)]
    figures: list[Figure] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        figures.extend(module.run())
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

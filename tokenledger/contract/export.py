"""Export the message and row models as JSON Schema (schemas/json/*.json, committed).

A test regenerates them and fails on drift, so the committed files are always the contract.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tokenledger.contract.files import shipped
from tokenledger.contract.messages import MESSAGES
from tokenledger.contract.rows import ROWS

JSON_DIR = shipped("contract/json", "schemas/json")


def documents() -> dict[str, str]:
    """File name -> JSON Schema text, for every message and row model."""
    models: dict[str, type[BaseModel]] = {f"{name}.json": m for name, m in MESSAGES.items()}
    models.update({f"row.{row.table}.json": row for row in ROWS})
    return {
        name: json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in sorted(models.items())
    }


def export(out_dir: Path = JSON_DIR) -> list[Path]:
    """Write every schema into ``out_dir`` and remove stale ones; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = documents()
    for stale in set(p.name for p in out_dir.glob("*.json")) - set(docs):
        (out_dir / stale).unlink()
    written = []
    for name, text in docs.items():
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written


def drift(out_dir: Path = JSON_DIR) -> list[str]:
    """Names of files in ``out_dir`` that differ from the models (missing, stale or changed)."""
    docs = documents()
    present = {p.name: p.read_text() for p in out_dir.glob("*.json")} if out_dir.exists() else {}
    names = set(docs) | set(present)
    return sorted(n for n in names if docs.get(n) != present.get(n))

"""The edge service for tests: `tokenledger serve` as a subprocess on a free 127.0.0.1 port
with a key list of its own, ready when its /ready says so; HTTP through urllib."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenledger.contract import topics
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.edge import keys
from tokenledger.streams.local.broker import free_port
from tokenledger.streams.local.processes import Supervisor

TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    url: str
    key: str
    """A key for every tenant and service (``"*"``: a collector's or a gateway's)."""
    keys: dict[str, str]
    """More keys, by service name."""
    proc: subprocess.Popen[bytes]
    log: Path
    key_file: Path

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = "default",
    ) -> Answer:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {self.key if key == 'default' else key}"
        request = urllib.request.Request(self.url + path, data=body, headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return Answer(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Answer(e.code, dict(e.headers), e.read())

    def ready(self) -> bool:
        try:
            return self.call("GET", "/ready", key=None).status == 200
        except OSError:
            return False


def with_topics(settings: Settings, tmp: Path) -> dict[str, str]:
    """Create every topic in ``settings``' namespace; the environment of an edge on them."""
    specs = [
        topics.TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS
    ]
    create_topics(settings.kafka, specs, settings.partitions, 1)
    return {
        "TOKENLEDGER_KAFKA": settings.kafka,
        "TOKENLEDGER_HOME": str(tmp),
        "TOKENLEDGER_TOPIC_NAMESPACE": settings.topic_namespace,
    }


def key_list(path: Path, grants: Mapping[str, list[str]]) -> dict[str, str]:
    """Write a key list granting each service its tenants; the keys by service."""
    made = {service: keys.new_key() for service in grants}
    doc = {"keys": [keys.entry(s, grants[s], k) for s, k in made.items()]}
    path.write_text(json.dumps(doc))
    return made


@contextmanager
def served(
    env: Mapping[str, str],
    tmp: Path,
    *args: str,
    grants: Mapping[str, list[str]] | None = None,
    keys_of: Served | None = None,
) -> Iterator[Served]:
    """`tokenledger serve` on a free port with a key list of its own (``grants`` adds keys
    by service; ``keys_of`` another edge's list instead), once its /ready answers; stopped on
    the way out."""
    if keys_of is None:
        made = key_list(tmp / "keys.json", {"*": ["*"], **(grants or {})})
    else:
        made = {"*": keys_of.key, **keys_of.keys}
        (tmp / "keys.json").write_text(keys_of.key_file.read_text())
    port = free_port()
    argv = [TOKENLEDGER, "serve", "--port", str(port), "--keys", str(tmp / "keys.json"), *args]
    with Supervisor(tmp, {**os.environ, **env}, grace_s=30) as children:
        child = children.start(f"edge-{port}", argv, append=True)
        edge = Served(
            f"http://127.0.0.1:{port}", made["*"], made, child.proc, child.log, tmp / "keys.json"
        )
        children.wait_until(child.name, edge.ready, 60, "its /ready", interval_s=0.1)
        yield edge

"""A real Alertmanager (Debian's prometheus-alertmanager) for a test: its own config and
storage, a free 127.0.0.1 port, no cluster; stopped by the process that started it."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tokenledger.streams.local.broker import free_port
from tokenledger.streams.local.processes import Supervisor

CONFIG = """
global:
  resolve_timeout: {resolve_timeout}
route:
  receiver: devnull
  group_wait: 1s
receivers:
  - name: devnull
"""


class Alertmanager:
    def __init__(self, url: str) -> None:
        self.url = url

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=10) as r:
            return json.loads(r.read())

    def active(self, fingerprint: str) -> bool:
        return any(
            a["labels"].get("fingerprint") == fingerprint and a["status"]["state"] == "active"
            for a in self.alerts()
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False


@contextmanager
def alertmanager(tmp: Path, resolve_timeout: str) -> Iterator[Alertmanager]:
    binary = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    assert os.path.exists(binary), "Alertmanager is missing: `make packages` installs it"
    root = tmp / "alertmanager"
    root.mkdir(parents=True, exist_ok=True)
    (root / "alertmanager.yml").write_text(CONFIG.format(resolve_timeout=resolve_timeout))
    port = free_port()
    argv = [
        binary,
        f"--config.file={root / 'alertmanager.yml'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        f"--storage.path={root / 'data'}",
    ]
    am = Alertmanager(f"http://127.0.0.1:{port}")
    with Supervisor(root, grace_s=30) as children:
        children.start("alertmanager", argv, log=root / "log")
        children.wait_until("alertmanager", am.ready, 30, "its /-/ready", interval_s=0.1)
        yield am

"""A real nginx (Debian's package) for a test: its own prefix and config, a free 127.0.0.1
port, started in the foreground and stopped by the process that started it."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tokenledger.streams.local.broker import free_ports
from tokenledger.streams.local.processes import Supervisor

GATEWAY = """
{user}
worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    server {{  # the upstream the gateway protects
        listen 127.0.0.1:{upstream};
        location / {{ return 200 "upstream ok\\n"; }}
    }}

    server {{
        listen 127.0.0.1:{port};
{snippet}
    }}
}}
"""


def snippet_from_docs(page: Path) -> str:
    """The nginx snippet exactly as the docs page shows it (so the docs are what is tested)."""
    text = page.read_text()
    start = text.index("```nginx\n") + len("```nginx\n")
    return text[start : text.index("```", start)]


@contextmanager
def gateway(tmp: Path, snippet: str) -> Iterator[str]:
    """nginx serving ``snippet`` (with 127.0.0.1:8080 as its upstream); its base URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(binary), "nginx is missing: `make packages` installs it"
    port, upstream = free_ports(2)
    root = tmp / "nginx"
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / d).mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = GATEWAY.format(
        user=user,
        dir=root,
        upstream=upstream,
        port=port,
        snippet=snippet.replace("127.0.0.1:8080", f"127.0.0.1:{upstream}"),
    )
    (root / "nginx.conf").write_text(conf)
    argv = [binary, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]
    with Supervisor(root, grace_s=30) as children:
        children.start(
            "nginx", [*argv, "-g", "daemon off;"], ready=lambda: _listening(port), timeout_s=30
        )
        yield f"http://127.0.0.1:{port}"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0

"""A package registry on 127.0.0.1 that npm can be pointed at (``npm_config_registry``),
serving one package whose tarball download hangs or breaks off: what `tokenledger setup`
meets on a bad network."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Mode = Literal["hang", "incomplete"]


def _tarball(name: str, version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        manifest = json.dumps({"name": name, "version": version}).encode()
        info = tarfile.TarInfo("package/package.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return buf.getvalue()


@dataclass
class Registry:
    url: str
    requests: list[str] = field(default_factory=list)
    """Paths asked for, in order."""


@contextmanager
def bad_registry(spec: str, mode: Mode) -> Iterator[Registry]:
    """Serves ``spec`` (``name@version``): its metadata answers at once; its tarball never
    answers (``hang``, until the registry closes) or sends half its bytes and closes the
    connection (``incomplete``)."""
    name, version = spec.rsplit("@", 1)
    tarball = _tarball(name, version)
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    closing = threading.Event()
    registry = Registry("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            registry.requests.append(self.path)
            if self.path.endswith(".tgz"):
                if mode == "hang":
                    closing.wait()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(tarball)))
                self.end_headers()
                self.wfile.write(tarball[: len(tarball) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            dist = {
                "tarball": f"{registry.url}{name}/-/{name}-{version}.tgz",
                "integrity": integrity,
            }
            body = json.dumps(
                {
                    "name": name,
                    "dist-tags": {"latest": version},
                    "versions": {version: {"name": name, "version": version, "dist": dist}},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    registry.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        closing.set()
        server.shutdown()
        server.server_close()
        thread.join(10)

"""The baseline for the edge's figures: a bare aiohttp server that reads the body and
answers a small JSON, nothing else. ``python -m bench.bare_http PORT``."""

from __future__ import annotations

import sys

from aiohttp import web


async def post(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"accepted": len(body) > 0, "rejected": []})


async def get(request: web.Request) -> web.Response:
    return web.json_response({"allowed": True, "state": "allow"})


async def claim(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "claimed", "token": "0" * 32}, status=201)


def main(port: int) -> None:
    app = web.Application(client_max_size=6 << 20)
    app.router.add_post("/v1/events", post)
    app.router.add_post("/v1/traces", post)
    app.router.add_get("/v1/check", get)
    app.router.add_post("/v1/claims", claim)
    app.router.add_get("/ready", get)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))

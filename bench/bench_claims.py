"""Claims through the edge (``tokenledger serve`` on one core): the latency of a claim at a
fixed 2,000 per second beside a bare aiohttp endpoint answering the same POST, and how many
generations a logical request costs when clients time out and retry against a slow local
stand-in for a provider, with claims and without."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import Figure, median, p99
from bench.bench_edge import TOKENLEDGER, edge_space, server
from tokenledger.contract.claims import fingerprint
from tokenledger.streams.local.broker import free_port

RATE = int(os.environ.get("TOKENLEDGER_BENCH_CLAIM_RATE", "2000"))
SECONDS = 5.0
LOGICAL_REQUESTS = 200
CLIENTS = 20
CLIENT_TIMEOUT_S = 1.0
ATTEMPTS = 6
FP = fingerprint("gpt-4o-mini", "bench", {})


async def paced_claims_ms(url: str, headers: dict[str, str]) -> list[float]:
    """POST a claim on a new key RATE times a second; latency from each scheduled time."""
    n = int(RATE * SECONDS)
    out: list[float] = []
    run = os.urandom(4).hex()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        start = time.perf_counter() + 0.1

        async def one(i: int) -> None:
            due = start + i / RATE
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            body = {"tenant_id": f"t{i % 20}", "idempotency_key": f"{run}-{i}", "fingerprint": FP}
            async with session.post(url, json=body, headers=headers) as r:
                await r.read()
                assert r.status == 201, (r.status, await r.text())
            out.append((time.perf_counter() - due) * 1000)

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


async def claims_served(base: str, headers: dict[str, str]) -> None:
    """Wait until the edge owns the claims topic's partitions (its group has settled)."""
    url = f"{base}/v1/claims?tenant_id=t&idempotency_key=k"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(url, headers=headers) as r:
                if r.status == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("the edge did not serve claims within 60 s")


async def generations(base: str, headers: dict[str, str], use_claims: bool) -> tuple[int, int]:
    """(provider generations, logical requests answered) for LOGICAL_REQUESTS requests whose
    clients give up after CLIENT_TIMEOUT_S and send the request again. The service keeps
    generating after its client gave up, as a real one does."""
    delays = random.Random(7)  # noqa: S311 - a reproducible load, not a secret
    generated = 0

    async def provider(request: web.Request) -> web.Response:
        nonlocal generated
        generated += 1
        await asyncio.sleep(delays.uniform(0.3, 2.0))
        return web.Response(body=b'{"text":"an answer"}')

    app = web.Application()
    app.router.add_post("/generate", provider)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    answered = 0
    run = os.urandom(4).hex()
    async with aiohttp.ClientSession() as session:

        async def service(key: str) -> bytes:
            token = None
            if use_claims:
                body = {"tenant_id": "bench", "idempotency_key": key, "fingerprint": FP}
                async with session.post(
                    f"{base}/v1/claims?wait=30", json=body, headers=headers
                ) as r:
                    answer = await r.json()
                if answer["status"] == "completed":
                    return bytes(answer["event_id"], "utf-8")
                token = answer["token"]
            async with session.post(f"http://127.0.0.1:{port}/generate") as r:
                result = await r.read()
            if token is not None:
                done = {"tenant_id": "bench", "idempotency_key": key, "token": token}
                async with session.post(
                    f"{base}/v1/claims/complete", json={**done, "event_id": key}, headers=headers
                ) as r:
                    await r.read()
            return result

        pending: set[asyncio.Task[bytes]] = set()

        async def client(i: int) -> None:
            nonlocal answered
            for _ in range(ATTEMPTS):
                task = asyncio.create_task(service(f"{run}-{i}"))
                pending.add(task)
                try:
                    await asyncio.wait_for(asyncio.shield(task), CLIENT_TIMEOUT_S)
                except TimeoutError:
                    continue
                answered += 1
                return

        gate = asyncio.Semaphore(CLIENTS)

        async def limited(i: int) -> None:
            async with gate:
                await client(i)

        await asyncio.gather(*(limited(i) for i in range(LOGICAL_REQUESTS)))
        await asyncio.gather(*pending)  # generations the clients gave up on still count
    await runner.cleanup()
    return generated, answered


def run() -> list[Figure]:
    with edge_space() as (env, tmp, key):
        auth = {"Authorization": f"Bearer {key}"}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [TOKENLEDGER, "serve", "--port", str(port), "--keys", str(tmp / "keys.json")]
        with server("edge", argv, env, f"{base}/ready", tmp):
            asyncio.run(claims_served(base, auth))
            edge = asyncio.run(paced_claims_ms(f"{base}/v1/claims", auth))
            with_claims = asyncio.run(generations(base, auth, True))
            without = asyncio.run(generations(base, auth, False))
        port = free_port()
        bare_argv = [sys.executable, "-m", "bench.bare_http", str(port)]
        with server("bare_http", bare_argv, env, f"http://127.0.0.1:{port}/ready", Path(tmp)):
            bare = asyncio.run(paced_claims_ms(f"http://127.0.0.1:{port}/v1/claims", auth))
    per_with = with_claims[0] / LOGICAL_REQUESTS
    per_without = without[0] / LOGICAL_REQUESTS
    return [
        Figure(
            "claims.claim_p99_ms",
            p99(edge),
            "ms",
            f"at {RATE:,}/s, a new key each (one acks=all write); p50 {median(edge):.2f} ms; "
            f"bare aiohttp p99 {p99(bare):.2f} ms, p50 {median(bare):.2f} ms; target < 5 ms",
        ),
        Figure("claims.bare_claim_p99_ms", p99(bare), "ms", "same client, bare aiohttp POST"),
        Figure(
            "claims.generations_per_logical_request",
            per_with,
            "gen/req",
            f"clients time out after {CLIENT_TIMEOUT_S:.0f} s and retry; provider 0.3-2.0 s; "
            f"without claims {per_without:.2f} ({without[0]} generations, {without[1]} of "
            f"{LOGICAL_REQUESTS} answered); with claims {with_claims[1]} answered",
        ),
        Figure(
            "claims.generations_per_logical_request_without_claims",
            per_without,
            "gen/req",
            "the same load, every retry generating",
        ),
    ]

"""The edge (``tokenledger serve``, pinned to one core) beside a bare aiohttp endpoint on
the same core, driven by the same client: CloudEvents batches of 100, OTLP export requests
of 100 GenAI spans, and budget checks at a fixed 2,000 per second (latency measured from
each check's scheduled send time, so a stall is not hidden)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from bench import Figure, local_broker, median, p99
from tokenledger.contract import topics
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.edge import keys
from tokenledger.streams.local.broker import free_port
from tokenledger.streams.local.processes import Supervisor

DURATION_S = 8.0
CONCURRENCY = 8
CHECK_RATE = 2000
CHECK_SECONDS = 5.0
TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")


def cloudevents_batch(n: int, start: int) -> bytes:
    ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    events = [
        {
            "specversion": "1.0",
            "type": "dev.tokenledger.usage.v1",
            "source": "bench",
            "id": f"e{start + i}",
            "time": ts,
            "data": {
                "tenant_id": f"t{i % 20}",
                "service": "bench",
                "feature": "search",
                "model": "gpt-4o-mini",
                "provider": "openai",
                "input_tokens": 1200,
                "output_tokens": 80,
                "latency_ms": 400,
                "success": True,
            },
        }
        for i in range(n)
    ]
    return json.dumps(events).encode()


def otlp_request(n: int) -> bytes:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(n):
        span = provider.get_tracer("bench").start_span("chat gpt-4o-mini")
        span.set_attributes(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 80,
                "tokenledger.tenant_id": f"t{i % 20}",
                "tokenledger.feature": "search",
            }
        )
        span.end()
    return encode_spans(memory.get_finished_spans()).SerializeToString()


async def throughput(url: str, bodies: list[bytes], headers: dict[str, str]) -> float:
    """Requests per second with CONCURRENCY requests in flight for DURATION_S."""
    done = 0
    deadline = time.perf_counter() + DURATION_S

    async def loop(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with session.post(
                url, data=bodies[(done + k) % len(bodies)], headers=headers
            ) as r:
                await r.read()
                assert r.status == 200, (r.status, await r.text())
            done += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(loop(session, k) for k in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


async def paced_latency_ms(url: str, headers: dict[str, str]) -> list[float]:
    """GET ``url`` at CHECK_RATE per second; each latency from its scheduled send time."""
    n = int(CHECK_RATE * CHECK_SECONDS)
    out: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        start = time.perf_counter() + 0.1

        async def one(i: int) -> None:
            due = start + i / CHECK_RATE
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            async with session.get(url, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append((time.perf_counter() - due) * 1000)

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def server(
    name: str, args: list[str], env: dict[str, str], ready_url: str, logs: Path
) -> Iterator[None]:
    """``args`` on core 1 (when taskset is there), once ``ready_url`` answers 200; its
    output in ``<logs>/<name>.log``."""
    pin = ["taskset", "-c", "1"] if shutil.which("taskset") and os.cpu_count() else []
    with Supervisor(logs, env, grace_s=30) as children:
        children.start(name, [*pin, *args])
        children.wait_until(name, lambda: _answers(ready_url), 60, ready_url, interval_s=0.1)
        yield


def measure(base: str, key: str) -> dict[str, float]:
    auth = {"Authorization": f"Bearer {key}"}
    ce = [cloudevents_batch(100, i * 100) for i in range(50)]
    spans = [otlp_request(100)]
    ce_rps = asyncio.run(
        throughput(
            f"{base}/v1/events", ce, {**auth, "Content-Type": "application/cloudevents-batch+json"}
        )
    )
    span_rps = asyncio.run(
        throughput(f"{base}/v1/traces", spans, {**auth, "Content-Type": "application/x-protobuf"})
    )
    checks = asyncio.run(paced_latency_ms(f"{base}/v1/check?tenant=t1&feature=search", auth))
    return {
        "events": ce_rps * 100,
        "spans": span_rps * 100,
        "p50": median(checks),
        "p99": p99(checks),
    }


@contextmanager
def edge_space() -> Iterator[tuple[dict[str, str], Path, str]]:
    """This client pinned to core 0 (the servers go on core 1), a broker of its own with
    every topic, and an API key for every tenant in ``<tmp>/keys.json``: (the servers'
    environment, tmp, the key)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    with local_broker() as (bootstrap, tmp):
        env = {
            **os.environ,
            "TOKENLEDGER_KAFKA": bootstrap,
            "TOKENLEDGER_HOME": str(tmp),
            "TOKENLEDGER_TOPIC_NAMESPACE": "",
        }
        create_topics(bootstrap, topics.TOPICS, 3, 1)
        key = keys.new_key()
        (tmp / "keys.json").write_text(json.dumps({"keys": [keys.entry("*", ["*"], key)]}))
        yield env, tmp, key


def run() -> list[Figure]:
    with edge_space() as (env, tmp, key):
        port = free_port()
        with server(
            "edge",
            [TOKENLEDGER, "serve", "--port", str(port), "--keys", str(tmp / "keys.json")],
            env,
            f"http://127.0.0.1:{port}/ready",
            tmp,
        ):
            edge = measure(f"http://127.0.0.1:{port}", key)
        port = free_port()
        with server(
            "bare_http",
            [sys.executable, "-m", "bench.bare_http", str(port)],
            env,
            f"http://127.0.0.1:{port}/ready",
            tmp,
        ):
            bare = measure(f"http://127.0.0.1:{port}", key)
    return [
        Figure(
            "edge.ingest_events_per_s",
            edge["events"],
            "ev/s",
            f"CloudEvents batches of 100, one core; bare aiohttp {bare['events']:,.0f} "
            f"(ratio {edge['events'] / bare['events']:.2f}); target >= 20,000",
        ),
        Figure("edge.bare_ingest_events_per_s", bare["events"], "ev/s", "same client, bare"),
        Figure(
            "edge.otlp_spans_per_s",
            edge["spans"],
            "spans/s",
            f"OTLP protobuf, 100 GenAI spans per request; bare {bare['spans']:,.0f}",
        ),
        Figure(
            "edge.check_p99_ms",
            edge["p99"],
            "ms",
            f"at {CHECK_RATE:,}/s; p50 {edge['p50']:.2f} ms; bare p99 {bare['p99']:.2f} ms, "
            f"p50 {bare['p50']:.2f} ms; target < 5 ms",
        ),
        Figure("edge.bare_check_p99_ms", bare["p99"], "ms", "same client, bare aiohttp GET"),
    ]

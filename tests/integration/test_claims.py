"""Claims by idempotency key across two real edge instances on the real broker: one
generation per logical request, the waiter gets the first attempt's result bytes, a completed
key replays, another fingerprint is refused, tenants never share a key, and a SIGKILLed
owner's claims are answered by the other instance under the lease rules."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.edge import Answer, Served, served, with_topics
from tests.helpers.settings import isolated
from tests.helpers.waiting import wait_for, wait_value
from tokenledger.contract.claims import fingerprint

pytestmark = pytest.mark.integration
OWNER = "X-Tokenledger-Claim-Owner"


def post(edge: Served, path: str, body: dict[str, Any], wait: float | None = None) -> Answer:
    query = "" if wait is None else f"?wait={wait}"
    return edge.call(
        "POST", path + query, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )


def claim_body(tenant: str, key: str, prompt: str = "the prompt", **extra: Any) -> dict[str, Any]:
    fp = fingerprint("gpt-4o", prompt, {"max_output_tokens": 800})
    return {"tenant_id": tenant, "idempotency_key": key, "fingerprint": fp, **extra}


def serving(edges: list[Served], probes: int = 16) -> None:
    """Every edge answers claims for keys on every partition (the group has settled)."""

    def all_answer() -> bool:
        return all(
            e.call("GET", f"/v1/claims?tenant_id=acme&idempotency_key=probe-{i}").status == 200
            for e in edges
            for i in range(probes)
        )

    wait_for(all_answer, 60, "both edges to answer claims", interval=0.2)


@contextmanager
def two_edges(kafka_bootstrap: str, tmp: Path, *args: str) -> Iterator[list[Served]]:
    settings = isolated(kafka_bootstrap, 4)
    env = with_topics(settings, tmp)
    with ExitStack() as stack:
        edges: list[Served] = []
        for name in ("a", "b"):
            (tmp / name).mkdir()
            own = {**env, "TOKENLEDGER_HOME": str(tmp / name)}
            keys_of = edges[0] if edges else None
            edges.append(stack.enter_context(served(own, tmp / name, *args, keys_of=keys_of)))
        serving(edges)
        yield edges


def test_one_generation_per_key_across_two_edges(kafka_bootstrap: str, tmp_path: Path) -> None:
    with two_edges(kafka_bootstrap, tmp_path, "--claims-store-results", "answer") as (a, b):
        result = base64.b64encode("the answer, é\n".encode()).decode()
        for i in range(6):  # keys on both owners: each edge forwards some
            key = f"req-{i}"
            body = claim_body("acme", key, feature="answer")
            with ThreadPoolExecutor(2) as pool:
                first, second = (pool.submit(post, e, "/v1/claims", body, 30) for e in (a, b))
                done, _ = wait([first, second], 60, FIRST_COMPLETED)
                winner = next(iter(done)).result()
                assert winner.status == 201, winner.body
                assert not (first.done() and second.done()), "the waiter did not wait"
                token = winner.json()["token"]
                completed = post(
                    b,
                    "/v1/claims/complete",
                    {
                        "tenant_id": "acme",
                        "idempotency_key": key,
                        "token": token,
                        "event_id": f"ev-{i}",
                        "usage": {"input_tokens": 1200, "output_tokens": 340},
                        "result_b64": result,
                    },
                )
                assert (completed.status, completed.json()["result_stored"]) == (200, True)
                waiter = (second if first in done else first).result()
            assert waiter.status == 200, waiter.body
            replay = waiter.json()
            assert (replay["status"], replay["event_id"], replay["result_b64"]) == (
                "completed",
                f"ev-{i}",
                result,
            )
            assert replay["usage"] == {"input_tokens": 1200, "output_tokens": 340}
            assert winner.headers[OWNER] == waiter.headers[OWNER]  # one decider per key
            again = post(a, "/v1/claims", body)
            assert (again.status, again.json()["result_b64"]) == (200, result)
        owners = {
            post(a, "/v1/claims", claim_body("acme", f"req-{i}")).headers[OWNER] for i in range(6)
        }
        assert owners == {a.url, b.url}, "the keys did not spread over both instances"

        other = post(b, "/v1/claims", claim_body("acme", "req-0", prompt="another prompt"))
        assert other.status == 422, other.body
        assert other.json()["status"] == "mismatch"

        # the same key in another tenant is another claim; without stored results a
        # completed claim answers with its event id only
        theirs = post(a, "/v1/claims", claim_body("globex", "req-0", feature="summary"))
        assert theirs.status == 201, theirs.body
        kept = post(
            a,
            "/v1/claims/complete",
            {
                "tenant_id": "globex",
                "idempotency_key": "req-0",
                "token": theirs.json()["token"],
                "event_id": "ev-globex",
                "result_b64": result,
            },
        )
        assert (kept.status, kept.json()["result_stored"]) == (200, False)
        replay = post(b, "/v1/claims", claim_body("globex", "req-0")).json()
        assert (replay["event_id"], replay["result_b64"]) == ("ev-globex", None)


def test_release_lets_a_retry_generate(kafka_bootstrap: str, tmp_path: Path) -> None:
    with two_edges(kafka_bootstrap, tmp_path) as (a, b):
        body = claim_body("acme", "flaky")
        with ThreadPoolExecutor(1) as pool:
            held = post(a, "/v1/claims", body)
            assert held.status == 201
            refused = post(b, "/v1/claims", body)
            assert refused.status == 409 and refused.headers["Retry-After"] in "12345"
            waiting = pool.submit(post, b, "/v1/claims", body, 30)
            token = held.json()["token"]
            gone = post(
                a,
                "/v1/claims/release",
                {"tenant_id": "acme", "idempotency_key": "flaky", "token": token},
            )
            assert gone.json() == {"status": "released"}
            retry = waiting.result()
        assert retry.status == 201, retry.body  # the waiter now holds the claim
        stale = post(
            a, "/v1/claims/renew", {"tenant_id": "acme", "idempotency_key": "flaky", "token": token}
        )
        assert (stale.status, stale.json()["status"]) == (409, "lost")


def test_a_killed_owners_claims_follow_the_lease(kafka_bootstrap: str, tmp_path: Path) -> None:
    with two_edges(kafka_bootstrap, tmp_path) as (a, b):
        held: dict[str, int] = {}
        for i in range(40):  # keys a owns: one with a long lease, one with a short one
            lease = 60 if "long" not in held else 1
            name = "long" if "long" not in held else "short"
            answer = post(a, "/v1/claims", claim_body("acme", f"k-{i}", lease_s=lease))
            assert answer.status == 201
            if answer.headers[OWNER] == a.url:
                held[name] = i
                if len(held) == 2:
                    break
        assert len(held) == 2
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()

        def on_b(i: int) -> Answer:
            return post(b, "/v1/claims", claim_body("acme", f"k-{i}", lease_s=60))

        # before its lease ends, the dead owner's attempt still holds the key ...
        long = wait_value(
            lambda: on_b(held["long"]), lambda r: r.status != 503, "b to own a's keys"
        )
        assert (long.status, long.headers[OWNER]) == (409, b.url), long.body
        # ... and once it has ended, a retry may generate
        short = on_b(held["short"])
        assert (short.status, short.headers[OWNER]) == (201, b.url), short.body

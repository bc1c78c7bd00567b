"""The docs people read: a short README that links every page of docs/, links that lead
somewhere, and examples that still fit the code they show (the curl calls are an event
and a question the edge accepts; the SDK calls bind to the SDK's own signatures)."""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import tokenledger
from tests.helpers.paths import ROOT
from tokenledger import BudgetGuard, Call, Ledger
from tokenledger.contract import topics
from tokenledger.contract.claims import ClaimRequest, CompleteRequest, fingerprint
from tokenledger.contract.messages import UsageEvent
from tokenledger.streams.edge import checks, cloudevents_in
from tokenledger.streams.edge.bodies import Limits

README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LINES_MAX = 200
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

SDK_CALLS = {
    "Ledger": (inspect.signature(Ledger), 0),
    "BudgetGuard": (inspect.signature(BudgetGuard), 0),
    "track": (inspect.signature(Call), 1),  # ledger.track(**kw) is Call(ledger, **kw)
    "record": (inspect.signature(Call.record), 1),
    "start": (inspect.signature(BudgetGuard.start), 1),
    "check": (inspect.signature(BudgetGuard.check), 1),
}
"""What the examples call, with the positional arguments the call itself supplies."""


def fenced(page: Path, lang: str) -> list[str]:
    return [body for info, body in FENCE.findall(page.read_text()) if info == lang]


def prose(page: Path) -> str:
    """The page without its code blocks (a link is never inside one)."""
    return FENCE.sub("", page.read_text())


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings."""
    headings = re.findall(r"^#+ (.+)$", prose(page), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_the_readme_is_short_and_links_every_docs_page() -> None:
    assert len(README.read_text().splitlines()) <= README_LINES_MAX
    linked = set(LINK.findall(prose(README)))
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")}
    assert len(pages) >= 12
    assert pages - linked == set()


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page)):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_file() or (anchor and anchor not in anchors(dest)):
            broken.append(target)
    assert broken == []


def curl_calls(
    page: Path, tmp: Path, endpoint: str = "/v1/events", start: str = "curl "
) -> list[list[str]]:
    """The page's curl commands (the block that calls ``endpoint``, from ``start`` on) run by
    bash as written, each with the arguments curl gets."""
    (block,) = [b for b in fenced(page, "sh") if "curl " in b and endpoint in b]
    out = tmp / page.stem
    out.mkdir()
    script = 'n=0; curl() { n=$((n+1)); printf "%s\\0" "$@" > "$OUT/$n"; }\n'
    script += block[block.index(start) :]
    env = {"PATH": "/usr/bin:/bin", "KEY": "tlk_example", "OUT": str(out)}
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=30)
    return [(out / str(i)).read_text().split("\0")[:-1] for i in (1, 2)]


@pytest.mark.parametrize("page", [README, DOCS / "edge.md"], ids=lambda p: p.name)
def test_the_curl_example_is_an_event_and_a_question_the_edge_accepts(
    page: Path, tmp_path: Path
) -> None:
    send, ask = curl_calls(page, tmp_path)
    assert send[:2] == ["-s", "localhost:8787/v1/events"]
    assert send[send.index("-H") + 1] == "Authorization: Bearer tlk_example"
    assert "Content-Type: application/cloudevents+json" in send
    body = send[send.index("-d") + 1].encode()
    (raw,) = cloudevents_in.events_of(cloudevents_in.STRUCTURED, body, Limits())
    got = cloudevents_in.read_event(0, raw, lambda t: t == "acme", lambda s: s == "checkout")
    assert isinstance(got, cloudevents_in.Accepted), got
    event = UsageEvent.model_validate_json(got.value)
    assert (got.topic, event.tenant_id, event.model, event.input_tokens, event.output_tokens) == (
        topics.USAGE,
        "acme",
        "gpt-4o-mini",
        1200,
        80,
    )
    where, _, query = ask[1].partition("?")
    assert (ask[0], where, ask[2:]) == (
        "-s",
        "localhost:8787/v1/check",
        ["-H", "Authorization: Bearer tlk_example"],
    )
    question = checks.from_query(dict(parse_qsl(query, strict_parsing=True)))
    assert question == checks.Question("acme", "search", None, 20_000_000)


def test_the_claims_curl_example_is_a_claim_the_edge_accepts(tmp_path: Path) -> None:
    claim, complete = curl_calls(README, tmp_path, "/v1/claims", start="FP=")
    assert claim[:4] == ["-s", "-X", "POST", "localhost:8787/v1/claims?wait=30"]
    req = ClaimRequest.model_validate_json(claim[claim.index("-d") + 1])
    assert (req.tenant_id, req.idempotency_key, req.feature) == (
        "acme",
        "order-42-summary",
        "summary",
    )
    # the shell's sha256sum of the documented text is the SDK's fingerprint
    assert req.fingerprint == fingerprint("gpt-4o", "Summarize ...", {})
    assert complete[3] == "localhost:8787/v1/claims/complete"
    sent = json.loads(complete[complete.index("-d") + 1])
    assert set(sent) <= set(CompleteRequest.model_fields)


def sdk_calls(page: Path) -> set[str]:
    """The SDK calls of the page's Python examples, each bound to the real signature (a
    keyword the SDK does not take fails here); the names imported must exist too."""
    bound = set()
    for block in fenced(page, "python"):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module == "tokenledger":
                assert all(hasattr(tokenledger, a.name) for a in node.names), block
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in SDK_CALLS:
                continue
            signature, given = SDK_CALLS[name]
            args = [None] * (given + len(node.args))
            signature.bind(*args, **{k.arg: None for k in node.keywords if k.arg})
            bound.add(name)
    return bound


@pytest.mark.parametrize("page", [README, DOCS / "sdk.md"], ids=lambda p: p.name)
def test_the_sdk_examples_call_what_the_sdk_takes(page: Path) -> None:
    assert sdk_calls(page) == set(SDK_CALLS)

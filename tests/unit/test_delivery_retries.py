"""A receiver's retries: how many attempts, the waits between them (doubling from
``backoff_s``), and which answers end them at once. No network: ``send`` and ``sleep``
stand in for the HTTP client and the clock."""

from __future__ import annotations

from tests.helpers import factories
from tokenledger.streams.alerts.receivers import Delivery, Receiver, Send, deliver

HOOK = Receiver("hook", "webhook", "http://127.0.0.1:9/hook")


def answering(*statuses: int) -> tuple[list[int], Send]:
    """A ``send`` answering ``statuses`` in turn (the last one from then on)."""
    seen: list[int] = []

    def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        status = statuses[min(len(seen), len(statuses) - 1)]
        seen.append(status)
        return status

    return seen, send


def test_waits_double_between_attempts_and_none_follows_the_last() -> None:
    seen, send = answering(503)
    slept: list[float] = []
    got = deliver(HOOK, factories.alert(), retries=5, backoff_s=0.5, send=send, sleep=slept.append)
    assert got == Delivery(False, 5, "HTTP 503 after 5 attempts")
    assert (len(seen), slept) == (5, [0.5, 1.0, 2.0, 4.0])


def test_a_success_after_retries_counts_its_attempts() -> None:
    seen, send = answering(429, 502, 200)
    slept: list[float] = []
    got = deliver(HOOK, factories.alert(), retries=5, backoff_s=0.25, send=send, sleep=slept.append)
    assert got == Delivery(True, 3)
    assert (seen, slept) == ([429, 502, 200], [0.25, 0.5])


def test_a_client_error_is_not_retried() -> None:
    seen, send = answering(404)
    slept: list[float] = []
    got = deliver(HOOK, factories.alert(), retries=5, backoff_s=0.5, send=send, sleep=slept.append)
    assert got == Delivery(False, 1, "HTTP 404 (not retried)")
    assert (seen, slept) == ([404], [])

"""Step 1 of the worker: raw bytes -> a usage or request event, or a DLQ reason.

On top of the contract's own validation (tokenledger.streams.records.parse_message) the worker refuses
event times that cannot be right, so one bad clock cannot open or close a window.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from tokenledger.contract.common import Event, check_event_time
from tokenledger.streams.records import Rejection, parse_message

T = TypeVar("T", bound=Event)


def parse(raw: bytes | None, model: type[T], now: datetime) -> T | Rejection:
    """The event in ``raw``, or why it cannot be used (including an implausible time)."""
    event = parse_message(raw, model)
    if isinstance(event, Rejection):
        return event
    bad_time = check_event_time(event.ts, now)
    if bad_time is not None:
        return Rejection("absurd_timestamp", bad_time)
    return event

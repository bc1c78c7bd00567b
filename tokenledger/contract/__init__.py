"""The tokenledger contract: message and row models, price tables, exported JSON Schema."""

from tokenledger.contract.common import NANO_PER_USD, SCHEMA_VERSION
from tokenledger.contract.messages import (
    MESSAGES,
    Alert,
    Budget,
    DlqRecord,
    EnrichedUsage,
    OutcomeEvent,
    RequestEvent,
    Signal,
    UsageEvent,
)

__all__ = [
    "MESSAGES",
    "NANO_PER_USD",
    "SCHEMA_VERSION",
    "Alert",
    "Budget",
    "DlqRecord",
    "EnrichedUsage",
    "OutcomeEvent",
    "RequestEvent",
    "Signal",
    "UsageEvent",
]

"""The topics the SDK writes and reads, in the topic namespace the workers use.

``TOKENLEDGER_TOPIC_NAMESPACE`` prefixes every topic (``<ns>.tokenledger.usage.v1``) so
that several environments share one cluster. The SDK reads it like the server does
(tokenledger/streams/config.py calls ``topic_namespace`` too): a service and the workers started with
the same environment meet on the same topics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tokenledger.contract import topics

NAMESPACE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


def topic_namespace(env: Mapping[str, str] | None = None) -> str:
    """``TOKENLEDGER_TOPIC_NAMESPACE`` (empty when unset); ValueError when it cannot be part
    of a topic name."""
    env = os.environ if env is None else env
    value = env.get("TOKENLEDGER_TOPIC_NAMESPACE") or ""
    if value and not re.fullmatch(NAMESPACE_PATTERN, value):
        raise ValueError(
            f"TOKENLEDGER_TOPIC_NAMESPACE={value!r} is not valid; use letters, digits, . _ -"
        )
    return value


@dataclass(frozen=True)
class TopicNames:
    """Where a Ledger sends each kind of event. ``TopicNames()`` are the plain names;
    ``TopicNames.in_namespace()`` (a Ledger's default) follows the namespace."""

    requests: str = topics.REQUESTS
    usage: str = topics.USAGE
    outcomes: str = topics.OUTCOMES

    @classmethod
    def in_namespace(cls, namespace: str | None = None) -> TopicNames:
        """The names in ``namespace``; by default ``TOKENLEDGER_TOPIC_NAMESPACE``'s."""
        ns = topic_namespace() if namespace is None else namespace
        return cls(
            requests=topics.namespaced(topics.REQUESTS, ns),
            usage=topics.namespaced(topics.USAGE, ns),
            outcomes=topics.namespaced(topics.OUTCOMES, ns),
        )


def signals_topic(namespace: str | None = None) -> str:
    """The signals topic in ``namespace`` (a BudgetGuard's default)."""
    ns = topic_namespace() if namespace is None else namespace
    return topics.namespaced(topics.SIGNALS, ns)

"""Settings for one test: the session's broker, a topic namespace of its own."""

from __future__ import annotations

import uuid

from tokenledger.streams.config import Settings


def isolated(bootstrap: str, partitions: int, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "TOKENLEDGER_KAFKA": bootstrap,
            "TOKENLEDGER_TOPIC_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
            "TOKENLEDGER_PARTITIONS": str(partitions),
            **extra,
        }
    )

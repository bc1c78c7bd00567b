"""What the demo leaves behind on the user's machine and cluster: nothing it made, and no
message to anyone outside it.

Each run has a topic namespace of its own; its stages run with the user's environment but
never with the user's alert receivers (a configured Slack, PagerDuty or Alertmanager would
be paged by the demo's synthetic runaway), and at the end every topic and consumer group of
the namespace is deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

RECEIVER_PREFIX = "TOKENLEDGER_NOTIFY_"
"""Every alert receiver the notifier reads starts so (tokenledger/streams/alerts/receivers.py)."""


def stage_env(environ: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment of the demo's stages: the user's, less every alert receiver, plus
    ``overrides``."""
    kept = {k: v for k, v in environ.items() if not k.startswith(RECEIVER_PREFIX)}
    return {**kept, **overrides}


def delete_namespace(
    bootstrap: str, namespace: str, timeout_s: float = 30.0, members_leave_s: float = 20.0
) -> tuple[int, int]:
    """Delete every topic and consumer group named ``<namespace>.*``; (topics, groups)
    deleted. The worker's group keeps its stopped static member until the session timeout
    (10 s): a group still in use is tried again, once a second, for ``members_leave_s``. A
    failure is logged, not raised: the demo's own result stands."""
    from confluent_kafka import KafkaException

    from tokenledger.streams.admin.topics import admin_client

    prefix = f"{namespace}."
    admin = admin_client(bootstrap)
    topics = groups = 0
    try:
        names = [t for t in admin.list_topics(timeout=timeout_s).topics if t.startswith(prefix)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=timeout_s).values():
                future.result(timeout=timeout_s)
                topics += 1
        listed = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout=timeout_s)
        pending = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
        deadline = time.monotonic() + members_leave_s
        while pending:
            deleted, pending = _delete_groups(admin, pending, timeout_s)
            groups += deleted
            if pending and time.monotonic() > deadline:
                raise KafkaException(f"consumer groups still in use: {', '.join(pending)}")
            if pending:
                time.sleep(1.0)  # until the stopped members' sessions expire
    except KafkaException as exc:
        log.warning(
            "could not delete the demo's topics and groups (%s); delete those named %s*",
            exc,
            prefix,
        )
    return topics, groups


def _delete_groups(admin: Any, ids: list[str], timeout_s: float) -> tuple[int, list[str]]:
    """Delete ``ids``: how many went, and those still in use (they have members)."""
    from confluent_kafka import KafkaError, KafkaException

    deleted, busy = 0, []
    for group, future in admin.delete_consumer_groups(ids, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            deleted += 1
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.NON_EMPTY_GROUP:
                raise
            busy.append(group)
    return deleted, busy

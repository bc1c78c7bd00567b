"""librdkafka client settings shared by the SDK, the workers and the CLI.

Security settings pass through unchanged: every ``TOKENLEDGER_KAFKA_OPT_<NAME>`` variable
becomes the librdkafka property ``<name>`` lowercased with ``_`` read as ``.``, e.g.
``TOKENLEDGER_KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL``, ``..._SASL_MECHANISM=SCRAM-SHA-512``,
``..._SASL_USERNAME``, ``..._SASL_PASSWORD``, ``..._SSL_CA_LOCATION``. Explicit ``overrides``
win over the environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

OPT_PREFIX = "TOKENLEDGER_KAFKA_OPT_"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def bootstrap_servers(env: Mapping[str, str] | None = None) -> str:
    """``TOKENLEDGER_KAFKA``, else the local broker on ``TOKENLEDGER_KAFKA_PORT`` (9092)."""
    env = os.environ if env is None else env
    if env.get("TOKENLEDGER_KAFKA"):
        return env["TOKENLEDGER_KAFKA"]
    port = env.get("TOKENLEDGER_KAFKA_PORT")
    return f"127.0.0.1:{port}" if port else DEFAULT_BOOTSTRAP


def committed_reader(group: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Overrides for a consumer that reads only committed transactions from the earliest
    offset and commits by hand, after its work is done (the sink, the notifier). A 10 s
    session (librdkafka's default is 45 s): partitions of a crashed instance move to the
    others that soon; heartbeats come from librdkafka's own thread, so a long insert does
    not end the session."""
    return {"group.id": group, "isolation.level": "read_committed",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000, **(extra or {})}  # fmt: skip


def env_options(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {
        name.removeprefix(OPT_PREFIX).lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(OPT_PREFIX) and value
    }


def client_config(
    bootstrap: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """A librdkafka config: bootstrap, security options from the environment, overrides.

    librdkafka's own log lines (e.g. a refused connection while a broker is away) go to
    ``logger`` (default ``tokenledger.kafka``) instead of straight to stderr.
    """
    config: dict[str, Any] = {"bootstrap.servers": bootstrap or bootstrap_servers()}
    config.update(env_options())
    config["logger"] = logger or logging.getLogger("tokenledger.kafka")
    config.update(overrides or {})
    return config

"""A firing incident stays active at a real Alertmanager (resolve_timeout 3 s) for several
resolve timeouts, across a notifier killed and restarted, and is resolved only when the
detector's resolve arrives. The notifier re-sends every 1.5 s with endsAt 6 s ahead, so a
restart faster than that loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import factories
from tests.helpers.alertmanager import alertmanager
from tests.helpers.cli import TOKENLEDGER
from tests.helpers.edge import with_topics
from tests.helpers.kafka_io import produce
from tests.helpers.settings import isolated
from tests.helpers.waiting import wait_for
from tokenledger.contract import topics

pytestmark = pytest.mark.integration
RESOLVE_TIMEOUT_S = 3


def test_a_firing_alert_stays_up_until_it_resolves(
    kafka_bootstrap: str, tmp_path: Path, spawn: Callable[..., subprocess.Popen[Any]]
) -> None:
    settings = isolated(kafka_bootstrap, 1)
    env = with_topics(settings, tmp_path)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    firing = factories.alert(status="firing", starts_at=start, ends_at=None, issued_at=start)
    resolved = firing.model_copy(
        update={"status": "resolved", "ends_at": datetime.now(UTC), "issued_at": datetime.now(UTC)}
    )

    with alertmanager(tmp_path, f"{RESOLVE_TIMEOUT_S}s") as am:
        notify_env = {**os.environ, **env, "TOKENLEDGER_NOTIFY_ALERTMANAGER_URL": am.url}

        def notifier(name: str) -> subprocess.Popen[bytes]:
            return spawn(
                [TOKENLEDGER, "notify", "--resend-interval", "1.5"],
                env=notify_env,
                log=tmp_path / f"{name}.log",
            )  # killed at teardown if a check fails

        first = notifier("notify-1")
        produce(
            settings.kafka,
            settings.topic(topics.ALERTS),
            [(firing.fingerprint.encode(), firing.model_dump_json().encode())],
        )
        wait_for(lambda: am.active(firing.fingerprint), 30, "the alert at Alertmanager")
        held_until = time.monotonic() + 3 * RESOLVE_TIMEOUT_S
        while time.monotonic() < held_until:  # three resolve timeouts, watched throughout
            assert am.active(firing.fingerprint), "Alertmanager let a firing alert go"
            time.sleep(0.25)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = notifier("notify-2")  # learns what fires from the alerts topic
        held_until = time.monotonic() + 3 * RESOLVE_TIMEOUT_S
        while time.monotonic() < held_until:
            assert am.active(firing.fingerprint), "the restarted notifier dropped the alert"
            time.sleep(0.25)
        produce(
            settings.kafka,
            settings.topic(topics.ALERTS),
            [(resolved.fingerprint.encode(), resolved.model_dump_json().encode())],
        )
        wait_for(lambda: not am.active(firing.fingerprint), 30, "the resolve at Alertmanager")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0

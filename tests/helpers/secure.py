"""A SASL/SCRAM broker with the standard authorizer for the security tests: one SCRAM user
per component (User:tokenledger-<component>, the defaults of `kafka acls`), and per test a
topic namespace whose topics and ACLs the admin creates with the CLI."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.cli import tl
from tokenledger.streams.admin.acls import COMPONENTS
from tokenledger.streams.config import Settings
from tokenledger.streams.local.broker import free_ports
from tokenledger.streams.local.sasl import SaslKafka, scram_options


@dataclass
class SecureKafka:
    broker: SaslKafka
    passwords: dict[str, str]
    """By component, and "admin"."""

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def options(self, who: str) -> dict[str, str]:
        """librdkafka settings of ``who`` (a component, or "admin")."""
        user = "admin" if who == "admin" else f"tokenledger-{who}"
        return scram_options(user, self.passwords[who])

    def env(self, who: str) -> dict[str, str]:
        """The same settings as TOKENLEDGER_KAFKA_OPT_* variables."""
        return {
            "TOKENLEDGER_KAFKA_OPT_" + k.upper().replace(".", "_"): v
            for k, v in self.options(who).items()
        }


@contextmanager
def secure_kafka(data_dir: Path, cache: Path) -> Iterator[SecureKafka]:
    passwords = {who: secrets.token_urlsafe(18) for who in ("admin", *COMPONENTS)}
    port, controller = free_ports(2)
    broker = SaslKafka(
        data_dir, cache, admin_password=passwords["admin"], port=port, controller_port=controller
    )
    broker.start()
    try:
        for component in COMPONENTS:
            broker.add_user(f"tokenledger-{component}", passwords[component])
        yield SecureKafka(broker, passwords)
    finally:
        broker.stop()


@dataclass
class Secured:
    """One test's namespace on the secure broker: its topics exist, its ACLs are applied."""

    kafka: SecureKafka
    namespace: str
    home: Path
    applied: str
    """What `kafka acls --apply` printed."""

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env("admin"))

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def env(self, who: str, **extra: str) -> dict[str, str]:
        """A `tokenledger` subprocess's environment as ``who``, in this namespace."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLEDGER_")}
        return {
            **base,
            "TOKENLEDGER_KAFKA": self.kafka.bootstrap,
            "TOKENLEDGER_TOPIC_NAMESPACE": self.namespace,
            "TOKENLEDGER_HOME": str(self.home),
            "TOKENLEDGER_PARTITIONS": "2",
            "TOKENLEDGER_CACHE": str(Settings.from_env().cache),
            **self.kafka.env(who),
            **extra,
        }


def secured(kafka: SecureKafka, home: Path) -> Secured:
    """A fresh namespace: topics created and every component's ACLs applied, by the admin."""
    home.mkdir(parents=True, exist_ok=True)
    made = Secured(kafka, f"s{uuid.uuid4().hex[:10]}", home, "")
    created = tl(made.env("admin"), "topics", "create")
    assert created.returncode == 0, created.stderr
    applied = tl(made.env("admin"), "kafka", "acls", "--apply")
    assert applied.returncode == 0, applied.stderr
    made.applied = applied.stdout
    return made

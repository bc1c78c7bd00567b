"""The local broker with SASL/SCRAM and Kafka's standard authorizer, to try and test
least-privilege ACLs (`tokenledger kafka acls`) on a real broker.

Clients connect with SCRAM-SHA-512 on SASL_PLAINTEXT (127.0.0.1 only); nothing is allowed
without an ACL, except to the super users: the broker's own admin, and ANONYMOUS, which is
how the broker reaches its controller over the PLAINTEXT controller listener (127.0.0.1;
KRaft controllers cannot authenticate with SCRAM, whose credentials live in the metadata
they serve). The admin's SCRAM credential is written into the storage at format time;
other users are added through the admin client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenledger.streams.admin.topics import admin_client, metadata_ok
from tokenledger.streams.errors import ServiceUnavailableError
from tokenledger.streams.local.broker import LocalKafka

MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

_SASL_LISTENERS = """# Written by tokenledger on every start; edit tokenledger/streams/local/sasl.py instead.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms={mechanism}
sasl.mechanism.inter.broker.protocol={mechanism}
listener.name.sasl_plaintext.{mechanism_lower}.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required \
username="{admin}" password="{password}";
authorizer.class.name={authorizer}
super.users=User:{admin};User:ANONYMOUS
allow.everyone.if.no.acl.found=false
"""


def scram_options(username: str, password: str) -> dict[str, str]:
    """librdkafka settings of a client that logs in as ``username`` on this broker."""
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": MECHANISM,
        "sasl.username": username,
        "sasl.password": password,
    }


class SaslKafka(LocalKafka):
    """A LocalKafka whose clients authenticate (SCRAM) and are authorized by ACLs."""

    def __init__(
        self,
        data_dir: Path,
        cache_dir: Path,
        *,
        admin_password: str,
        admin: str = "admin",
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir, cache_dir, **kwargs)
        self.admin = admin
        self._admin_password = admin_password

    def admin_options(self) -> dict[str, str]:
        """Client settings of the broker's admin (a super user)."""
        return scram_options(self.admin, self._admin_password)

    def server_properties(self) -> str:
        sasl = _SASL_LISTENERS.format(
            port=self.port,
            controller_port=self.controller_port,
            mechanism=MECHANISM,
            mechanism_lower=MECHANISM.lower(),
            admin=self.admin,
            password=self._admin_password,
            authorizer=AUTHORIZER,
        )
        return sasl + self.storage_properties()

    def _write_config(self) -> None:
        super()._write_config()
        self.properties.chmod(0o600)  # it holds the admin's password

    def format_args(self) -> list[str]:
        return ["--add-scram", f"{MECHANISM}=[name={self.admin},password={self._admin_password}]"]

    def answers(self, timeout: float) -> bool:
        return metadata_ok(self.bootstrap, timeout=timeout, options=self.admin_options())

    def add_user(self, name: str, password: str) -> None:
        """Create (or replace) the SCRAM credential of ``name``."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import (
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        upsert = UserScramCredentialUpsertion(name, info, password.encode())
        admin = admin_client(self.bootstrap, self.admin_options())
        try:
            for future in admin.alter_user_scram_credentials([upsert]).values():
                future.result(timeout=30)
        except KafkaException as exc:
            raise ServiceUnavailableError(
                f"cannot add the SCRAM user {name}: {exc.args[0].str()}"
            ) from None

"""The edge's Kafka security: librdkafka's TOKENLEDGER_KAFKA_OPT_* options become Faust
credentials, and through Faust exactly the aiokafka settings; what aiokafka cannot honour
is refused with one line naming the variable, never a secret."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from tokenledger.streams.edge.credentials import broker_credentials
from tokenledger.streams.errors import UserError

SCRAM = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "tokenledger-edge",
    "sasl.password": "edge-secret-pw",
}


def certificate(tmp_path: Path, passphrase: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate and its key (encrypted with ``passphrase``), by openssl."""
    cert, key = tmp_path / "edge.pem", tmp_path / "edge.key"
    protect = ["-passout", f"pass:{passphrase}"] if passphrase else ["-noenc"]
    fixed = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 1"
    subject = ["-subj", "/CN=tokenledger-test-ca"]
    files = ["-keyout", str(key), "-out", str(cert)]
    run = ["openssl", *fixed.split(), *subject, *files, *protect]
    subprocess.run(run, check=True, capture_output=True, timeout=60)  # noqa: S603
    return cert, key


def test_no_options_is_plaintext() -> None:
    assert broker_credentials({}) is None
    assert broker_credentials({"security.protocol": "plaintext"}) is None
    assert credentials_to_aiokafka_auth(None) == {"security_protocol": "PLAINTEXT"}


def test_sasl_scram_reaches_aiokafka_as_given() -> None:
    creds = broker_credentials(SCRAM)
    assert isinstance(creds, SASLCredentials)
    assert credentials_to_aiokafka_auth(creds) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tokenledger-edge",
        "sasl_plain_password": "edge-secret-pw",
        "ssl_context": None,
    }
    assert "edge-secret-pw" not in repr(creds)
    # librdkafka's plural spelling and lowercase values mean the same
    plural = {**SCRAM, "security.protocol": "sasl_plaintext"}
    plural["sasl.mechanisms"] = plural.pop("sasl.mechanism").lower()
    assert credentials_to_aiokafka_auth(broker_credentials(plural)) == (
        credentials_to_aiokafka_auth(creds)
    )


def test_sasl_ssl_loads_the_ca_and_the_client_certificate(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path, "key-secret")
    options = {
        **SCRAM,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "ssl.ca.location": str(cert),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.key.password": "key-secret",
    }
    auth = dict(credentials_to_aiokafka_auth(broker_credentials(options)))
    context = auth.pop("ssl_context")
    assert auth == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "tokenledger-edge",
        "sasl_plain_password": "edge-secret-pw",
    }
    assert isinstance(context, ssl.SSLContext)
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "tokenledger-test-ca"),),)
    ]
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    with pytest.raises(UserError) as wrong:
        broker_credentials({**options, "ssl.key.password": "not-it"})
    assert str(wrong.value).startswith(f"cannot load the edge's TLS settings ({cert}, {cert}, ")
    assert "not-it" not in str(wrong.value) and "key-secret" not in str(wrong.value)


def test_ssl_without_sasl_and_relaxed_verification(tmp_path: Path) -> None:
    cert, _ = certificate(tmp_path)
    creds = broker_credentials({"security.protocol": "SSL", "ssl.ca.location": str(tmp_path)})
    assert isinstance(creds, SSLCredentials)
    assert credentials_to_aiokafka_auth(creds)["security_protocol"] == "SSL"
    relaxed = broker_credentials(
        {
            "security.protocol": "SSL",
            "ssl.ca.location": str(cert),
            "ssl.endpoint.identification.algorithm": "none",
        }
    )
    assert isinstance(relaxed, SSLCredentials)
    assert (relaxed.context.check_hostname, relaxed.context.verify_mode) == (
        False,
        ssl.CERT_REQUIRED,
    )
    unverified = broker_credentials(
        {"security.protocol": "SSL", "enable.ssl.certificate.verification": "false"}
    )
    assert isinstance(unverified, SSLCredentials)
    assert (unverified.context.check_hostname, unverified.context.verify_mode) == (
        False,
        ssl.CERT_NONE,
    )


P = "TOKENLEDGER_KAFKA_OPT_"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {**SCRAM, "ssl.keystore.location": "/etc/k.p12"},
            f"{P}SSL_KEYSTORE_LOCATION (ssl.keystore.location) has no equivalent in the edge's "
            "Kafka client (aiokafka); `tokenledger serve` takes security.protocol, sasl.mechanism, "
            "sasl.username, sasl.password and the ssl.* file options (see docs/security.md: Kafka security)",
        ),
        (
            {"security.protocol": "SASL_TLS"},
            f"{P}SECURITY_PROTOCOL='SASL_TLS': use one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        (
            {"sasl.username": "edge", "sasl.password": "edge-secret-pw"},
            f"{P}SASL_USERNAME is set but security.protocol is PLAINTEXT: set "
            f"{P}SECURITY_PROTOCOL to SASL_SSL or SASL_PLAINTEXT, or unset the option",
        ),
        (
            {**SCRAM, "ssl.ca.location": "/etc/ca.pem"},
            f"{P}SSL_CA_LOCATION is set but security.protocol is SASL_PLAINTEXT: set "
            f"{P}SECURITY_PROTOCOL to SSL or SASL_SSL, or unset the option",
        ),
        (
            {**SCRAM, "sasl.mechanism": "GSSAPI"},
            f"{P}SASL_MECHANISM=GSSAPI: the edge (aiokafka) supports PLAIN, SCRAM-SHA-256, "
            "SCRAM-SHA-512",
        ),
        (
            {k: v for k, v in SCRAM.items() if k != "sasl.mechanism"},
            f"security.protocol SASL_* needs {P}SASL_MECHANISM: one of PLAIN, SCRAM-SHA-256, "
            "SCRAM-SHA-512",
        ),
        (
            {**SCRAM, "sasl.mechanisms": "PLAIN"},
            f"{P}SASL_MECHANISM and {P}SASL_MECHANISMS differ; set one",
        ),
        (
            {k: v for k, v in SCRAM.items() if k != "sasl.password"},
            f"security.protocol SASL_* needs {P}SASL_PASSWORD",
        ),
        (
            {"security.protocol": "SSL", "ssl.key.location": "/etc/key.pem"},
            f"{P}SSL_KEY_LOCATION needs {P}SSL_CERTIFICATE_LOCATION",
        ),
        (
            {"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"},
            "cannot load the edge's TLS settings (/nonexistent/ca.pem): No such file or directory",
        ),
        (
            {"security.protocol": "SSL", "enable.ssl.certificate.verification": "no"},
            f"{P}ENABLE_SSL_CERTIFICATE_VERIFICATION='no': use true or false",
        ),
    ],
)
def test_what_the_edge_cannot_honour_is_one_clear_line(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(UserError) as refused:
        broker_credentials(options)
    assert str(refused.value) == message
    assert "edge-secret-pw" not in str(refused.value)

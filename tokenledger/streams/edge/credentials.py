"""The edge's Kafka security from the same ``TOKENLEDGER_KAFKA_OPT_*`` settings as every
other client: librdkafka's option names mapped to Faust's credentials for aiokafka.

The edge runs on aiokafka, not librdkafka, so each option is translated, and an option
aiokafka has no equivalent for is refused with its name (never silently dropped: a
cluster that needs it would otherwise fail later, and less clearly). Secrets never appear
in a message.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from tokenledger.kafka_config import OPT_PREFIX
from tokenledger.streams.errors import UserError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_OPTIONS = ("sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password")
SSL_OPTIONS = (
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
)
SUPPORTED = ("security.protocol", *SASL_OPTIONS, *SSL_OPTIONS)


def env_name(option: str) -> str:
    """The variable that sets librdkafka ``option``: ssl.ca.location -> ..._SSL_CA_LOCATION."""
    return OPT_PREFIX + option.upper().replace(".", "_")


def broker_credentials(options: Mapping[str, str]) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for librdkafka-style ``options`` (None: PLAINTEXT)."""
    unknown = sorted(set(options) - set(SUPPORTED))
    if unknown:
        raise UserError(
            f"{env_name(unknown[0])} ({unknown[0]}) has no equivalent in the edge's Kafka "
            "client (aiokafka); `tokenledger serve` takes security.protocol, sasl.mechanism, "
            "sasl.username, sasl.password and the ssl.* file options (see docs/security.md: "
            "Kafka security)"
        )
    protocol = options.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise UserError(
            f"{env_name('security.protocol')}={options['security.protocol']!r}: use one of "
            f"{', '.join(PROTOCOLS)}"
        )
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    stray = [
        o for o in options if (o in SASL_OPTIONS and not sasl) or (o in SSL_OPTIONS and not tls)
    ]
    if stray:
        wanted = "SASL_SSL or SASL_PLAINTEXT" if stray[0] in SASL_OPTIONS else "SSL or SASL_SSL"
        raise UserError(
            f"{env_name(stray[0])} is set but security.protocol is {protocol}: set "
            f"{env_name('security.protocol')} to {wanted}, or unset the option"
        )
    mechanism = _mechanism(options) if sasl else None
    username = _required(options, "sasl.username") if sasl else None
    password = _required(options, "sasl.password") if sasl else None
    context = ssl_context(options) if tls else None
    if not sasl:
        return None if context is None else SSLCredentials(context)
    return SASLCredentials(
        username=username, password=password, mechanism=mechanism, ssl_context=context
    )


def _required(options: Mapping[str, str], option: str) -> str:
    value = options.get(option)
    if not value:
        raise UserError(f"security.protocol SASL_* needs {env_name(option)}")
    return value


def _mechanism(options: Mapping[str, str]) -> str:
    given = {options[o].upper() for o in ("sasl.mechanism", "sasl.mechanisms") if o in options}
    if len(given) > 1:
        raise UserError(
            f"{env_name('sasl.mechanism')} and {env_name('sasl.mechanisms')} differ; set one"
        )
    if not given:
        # librdkafka would use GSSAPI, which the edge cannot
        raise UserError(
            f"security.protocol SASL_* needs {env_name('sasl.mechanism')}: one of "
            f"{', '.join(MECHANISMS)}"
        )
    mechanism = given.pop()
    if mechanism not in MECHANISMS:
        raise UserError(
            f"{env_name('sasl.mechanism')}={mechanism}: the edge (aiokafka) supports "
            f"{', '.join(MECHANISMS)}"
        )
    return mechanism


def ssl_context(options: Mapping[str, str]) -> ssl.SSLContext:
    """A TLS client context from librdkafka's ssl.* options: the CA (file, folder, PEM or
    the system's), the client's certificate and key, and whether to verify the broker."""
    from aiokafka.helpers import create_ssl_context

    ca = options.get("ssl.ca.location")
    if ca == "probe":  # librdkafka: look in the system's usual places
        ca = None
    cert, key = options.get("ssl.certificate.location"), options.get("ssl.key.location")
    if key and not cert:
        raise UserError(
            f"{env_name('ssl.key.location')} needs {env_name('ssl.certificate.location')}"
        )
    folder = ca is not None and Path(ca).is_dir()
    try:
        context = create_ssl_context(
            cafile=None if folder else ca,
            capath=ca if folder else None,
            cadata=options.get("ssl.ca.pem"),
            certfile=cert,
            keyfile=key,
            password=options.get("ssl.key.password"),
        )
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(f for f in (ca, cert, key) if f) or "the CA"
        raise UserError(f"cannot load the edge's TLS settings ({files}): {_reason(exc)}") from None
    if _choice(options, "enable.ssl.certificate.verification", ("true", "false")) == "false":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if _choice(options, "ssl.endpoint.identification.algorithm", ("https", "none")) == "none":
        context.check_hostname = False
    return context


def _choice(options: Mapping[str, str], option: str, allowed: tuple[str, str]) -> str:
    """The option's value, lowercased, one of ``allowed`` (the first is the default)."""
    value = options.get(option, allowed[0]).lower()
    if value not in allowed:
        raise UserError(f"{env_name(option)}={value!r}: use {' or '.join(allowed)}")
    return value


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return exc.strerror or str(exc)

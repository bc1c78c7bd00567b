"""Kafka client settings: bootstrap resolution and security passthrough."""

from __future__ import annotations

import logging

import pytest

from tokenledger.kafka_config import bootstrap_servers, client_config, env_options


def test_bootstrap_resolution() -> None:
    assert bootstrap_servers({}) == "127.0.0.1:9092"
    assert bootstrap_servers({"TOKENLEDGER_KAFKA_PORT": "19092"}) == "127.0.0.1:19092"
    assert bootstrap_servers({"TOKENLEDGER_KAFKA": "k1:9093,k2:9093"}) == "k1:9093,k2:9093"


def test_security_options_pass_through_from_the_environment() -> None:
    env = {
        "TOKENLEDGER_KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL",
        "TOKENLEDGER_KAFKA_OPT_SASL_MECHANISM": "SCRAM-SHA-512",
        "TOKENLEDGER_KAFKA_OPT_SASL_USERNAME": "gateway",
        "TOKENLEDGER_KAFKA_OPT_SSL_CA_LOCATION": "/etc/ssl/ca.pem",
        "TOKENLEDGER_KAFKA_OPT_EMPTY": "",
        "TOKENLEDGER_KAFKA": "ignored-here:9092",
    }
    assert env_options(env) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "gateway",
        "ssl.ca.location": "/etc/ssl/ca.pem",
    }


def test_client_config_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENLEDGER_KAFKA_OPT_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TOKENLEDGER_KAFKA_OPT_SASL_USERNAME", "gateway")
    config = client_config("b:1", {"security.protocol": "SSL", "acks": "all"})
    assert config["bootstrap.servers"] == "b:1"
    assert config["security.protocol"] == "SSL"  # explicit overrides win
    assert config["acks"] == "all" and config["sasl.username"] == "gateway"
    assert isinstance(config["logger"], logging.Logger)

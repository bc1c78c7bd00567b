"""One redaction helper: a DSN's password and credential parameters become ***, in the DSN
shown and in any text or log line that quotes them."""

from __future__ import annotations

import io
import logging

import pytest

from tokenledger.streams.redact import RedactingFilter, dsn_secrets, redact_dsn, scrub, url_secrets


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("http://tl:pw-S3cr3t%40tl@ch.internal:8123/db", "http://tl:***@ch.internal:8123/db"),
        (
            "https://tl:p@ch:8443/?password=x&compress=1",
            "https://tl:***@ch:8443/?password=***&compress=1",
        ),
        (
            "clickhouse://ch:9000/?user=tl&password=pw&secure=1",
            "clickhouse://ch:9000/?user=tl&password=***&secure=1",
        ),
        ("http://tl@ch:8123", "http://tl@ch:8123"),  # a user without a password shows as it is
        ("http://ch:8123/?access_token=abc", "http://ch:8123/?access_token=***"),
        ("chdb:///var/lib/tokenledger/clickhouse", "chdb:///var/lib/tokenledger/clickhouse"),
    ],
)
def test_a_dsn_is_shown_with_its_credentials_masked(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


def test_every_form_of_the_password_is_scrubbed_from_a_message() -> None:
    dsn = "http://tl:pw-S3cr3t%40tl@ch:8123/?password=q1"
    assert set(dsn_secrets(dsn)) >= {"pw-S3cr3t@tl", "pw-S3cr3t%40tl", "q1"}
    text = f"HTTPDriver for {dsn} failed: auth pw-S3cr3t@tl (user tl, pw-S3cr3t%40tl)"
    assert scrub(text, dsn_secrets(dsn)) == (
        "HTTPDriver for http://tl:***@ch:8123/?password=*** failed: auth *** (user tl, ***)"
    )
    assert dsn_secrets("chdb:///data") == ()


def test_a_receiver_url_is_a_secret_as_a_whole() -> None:
    url = "https://hooks.slack.example/services/T0/B0/s3cret"
    text = "URL can't contain control characters. '/services/T0/B0/s3cret' (found at least ' ')"
    assert scrub(text, url_secrets(url), urls=True) == (
        "URL can't contain control characters. '***' (found at least ' ')"
    )
    assert (
        scrub(f"POST {url} and http://other/x refused", (), urls=True) == "POST *** and *** refused"
    )


def test_a_log_line_quoting_a_dsn_is_written_without_its_password() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter(dsn_secrets("http://tl:hunter2-long@ch:8123")))
    logger = logging.getLogger("test_redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "retrying %s (%s)", "http://tl:hunter2-long@ch:8123", "password hunter2-long"
        )
    finally:
        logger.removeHandler(handler)
    assert out.getvalue() == "retrying http://tl:***@ch:8123 (password ***)\n"

"""Secrets out of everything printed and logged: a DSN's password, a receiver's URL.

A ClickHouse DSN may carry ``user:password@`` or a ``?password=`` parameter; error texts
from drivers may quote the DSN, the URL or the password alone (percent-encoded or not).
Every message that names a DSN shows ``redact_dsn(dsn)``; every text that may quote one
goes through ``scrub(text, secrets)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MASK = "***"
SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "key", "token", "access_token", "secret"})
"""Query parameters whose values are credentials."""
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """``dsn`` as it may be shown: scheme, user, host, path and harmless parameters kept,
    the password and credential parameters replaced by ``***``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return MASK
    shown = dsn
    if parts.password is not None:
        userinfo = parts.netloc.rpartition("@")[0]
        user = userinfo.partition(":")[0]
        shown = shown.replace(f"//{userinfo}@", f"//{user}:{MASK}@", 1)
    if parts.query:
        query = "&".join(
            f"{name}={MASK}" if name.lower() in SECRET_PARAMS and sep else f"{name}{sep}{value}"
            for name, sep, value in (p.partition("=") for p in parts.query.split("&"))
        )
        shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown


def dsn_secrets(dsn: str) -> tuple[str, ...]:
    """The credentials inside ``dsn``, in each form a message may quote them."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return (dsn,) if dsn else ()
    found = [parts.password or ""]
    found += [
        v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() in SECRET_PARAMS
    ]
    return _forms(found)


def url_secrets(url: str, *extra: str) -> tuple[str, ...]:
    """A receiver URL is a secret as a whole (Slack and webhook URLs carry their token in
    the path): the URL, its path and query, and ``extra`` (keys, tokens)."""
    try:
        parts = urlsplit(url)
        pieces = [url, parts.path if len(parts.path) > 1 else "", parts.query, parts.password or ""]
    except ValueError:
        pieces = [url]
    return _forms([*pieces, *extra])


def _forms(values: Iterable[str]) -> tuple[str, ...]:
    forms = {f for v in values if v for f in (v, unquote(v), quote(v, safe=""), quote(v))}
    return tuple(sorted(forms, key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str], *, urls: bool = False) -> str:
    """``text`` with every secret replaced by ``***`` (and, with ``urls``, every URL too;
    otherwise a URL's password)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    if urls:
        return _URL.sub(MASK, text)
    return _URL.sub(lambda m: redact_dsn(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """Scrubs each record's message before a handler writes it: a library that quotes a
    DSN in a log line does not leak its password."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        return True

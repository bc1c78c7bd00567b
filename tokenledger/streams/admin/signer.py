"""The writers' side of authority: Ed25519 private keys for the workers and `tokenledger
budget`, and the key files operators make with `tokenledger keys`.

Only writers load a private key; the SDK (tokenledger/) has no code that could. A private
key is a PEM file (PKCS#8, unencrypted: what `tokenledger keys generate` or
`openssl genpkey -algorithm ed25519` writes) named by ``TOKENLEDGER_SIGNING_KEY_FILE``; its
public half goes into every reader's ``TOKENLEDGER_PUBLIC_KEYS``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from tokenledger.signing import (
    ENV as PUBLIC_ENV,
)
from tokenledger.signing import (
    HEADER,
    ISSUED_HEADER,
    HeaderValue,
    PublicKeyring,
    SigningKeyError,
    key_id,
    parse_public,
    public_keys,
    signed_bytes,
)
from tokenledger.streams.admin import hmac_migration

ENV = "TOKENLEDGER_SIGNING_KEY_FILE"


@dataclass(frozen=True)
class Signer:
    """One writer's private key; with ``legacy`` (the migration from HMAC only) each record
    also carries the old HMAC signature."""

    private: Ed25519PrivateKey
    legacy: hmac_migration.HmacKeys | None = None
    key_id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id(self.private.public_key()))

    def headers(
        self, topic: str, record_key: bytes | None, value: bytes | None, issued_ms: int
    ) -> list[tuple[str, HeaderValue]]:
        kid = self.key_id
        signature = self.private.sign(signed_bytes(topic, record_key, value, issued_ms, kid))
        out: list[tuple[str, HeaderValue]] = [
            (HEADER, f"{kid}:{base64.b64encode(signature).decode()}".encode()),
            (ISSUED_HEADER, str(issued_ms).encode()),
        ]
        if self.legacy is not None:
            out += hmac_migration.headers(self.legacy, topic, record_key, value, issued_ms)
        return out


def headers_for(
    signer: Signer | None, topic: str, record_key: bytes | None, value: bytes | None, issued_ms: int
) -> list[tuple[str, HeaderValue]] | None:
    """The headers to produce with, or None without a signer (nothing is signed)."""
    return None if signer is None else signer.headers(topic, record_key, value, issued_ms)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the key file {path}: {exc.strerror}") from None


def load_private(path: Path) -> Ed25519PrivateKey:
    data = _read(path)
    if b"PRIVATE KEY" not in data:
        raise SigningKeyError(
            f"{path} is not a private key file (PEM); make one with "
            "`tokenledger keys generate --out FILE`"
        )
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningKeyError(f"{path} is encrypted; give an unencrypted PKCS#8 key") from None
    except ValueError:
        raise SigningKeyError(f"{path} is not a readable PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"{path} is not an Ed25519 private key (it holds {type(key).__name__}); make one "
            "with `tokenledger keys generate`"
        )
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """The public key of a private key file, a PEM public key file, or an ``ed25519:`` line."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return load_private(path).public_key()
    if b"PUBLIC KEY" in data:
        try:
            key = load_pem_public_key(data)
        except ValueError:
            raise SigningKeyError(f"{path} is not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{path} holds a public key that is not Ed25519")
        return key
    return parse_public(data.decode(errors="replace"), str(path))


def generate(path: Path) -> Ed25519PublicKey:
    """A new private key in ``path`` (readable by its owner only); never overwrites."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path} exists; a key file is never overwritten") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot write the key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key.public_key()


def writer_keys(env: Mapping[str, str] | None = None) -> tuple[Signer | None, PublicKeyring | None]:
    """A writer's private key and the ring it reads with, both or neither: a writer with a
    key but no ring would accept unsigned records; one with a ring but no key would write
    records every reader refuses; a key outside the ring signs what readers refuse."""
    env = os.environ if env is None else env
    ring = public_keys(env)
    path = (env.get(ENV) or "").strip()
    legacy = hmac_migration.legacy_keys(env)
    signer = Signer(load_private(Path(path)), legacy) if path else None
    if signer is None and legacy is not None:
        raise SigningKeyError(f"{hmac_migration.ENV} is only read next to {ENV} (migration)")
    if signer is not None and ring is None:
        raise SigningKeyError(
            f"{ENV} is set but {PUBLIC_ENV} is not: unsigned records would "
            f"count; set {PUBLIC_ENV} (`tokenledger keys public FILE...`)"
        )
    if signer is None and ring is not None:
        raise SigningKeyError(
            f"{PUBLIC_ENV} is set but {ENV} is not: readers would refuse "
            "the unsigned records this writes"
        )
    if signer is not None and ring is not None and signer.key_id not in ring.by_id:
        raise SigningKeyError(
            f"the key in {ENV} (id {signer.key_id}) is not in {PUBLIC_ENV}: "
            "readers would refuse what it signs"
        )
    return signer, ring

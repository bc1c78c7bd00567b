"""Ed25519 keys for tests: a writer's private key file and the readers' public key ring, as
`tokenledger keys generate` and `tokenledger keys public` make them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tokenledger.signing import ISSUED_HEADER, HeaderValue, PublicKeyring, key_id, public_text
from tokenledger.streams.admin import hmac_migration
from tokenledger.streams.admin.signer import Signer, generate, load_private

Header = tuple[str, HeaderValue]


@dataclass(frozen=True)
class KeyFile:
    path: Path
    signer: Signer

    @property
    def public(self) -> str:
        """The ``ed25519:...`` form TOKENLEDGER_PUBLIC_KEYS lists."""
        return public_text(self.signer.private.public_key())

    @property
    def id(self) -> str:
        return key_id(self.signer.private.public_key())


def key_file(folder: Path, name: str) -> KeyFile:
    path = folder / f"{name}.pem"
    generate(path)
    return KeyFile(path, Signer(load_private(path)))


def signer() -> Signer:
    """A key that lives only in memory (a stranger's, or a test's own)."""
    return Signer(Ed25519PrivateKey.generate())


def ring(*signers: Signer) -> PublicKeyring:
    return PublicKeyring(tuple(s.private.public_key() for s in signers))


def ring_text(*keys: KeyFile) -> str:
    return ",".join(k.public for k in keys)


def writer_env(key: KeyFile, *trusted: KeyFile) -> dict[str, str]:
    """A writer's environment: its private key file and the public keys it reads with
    (its own and ``trusted``)."""
    return {
        "TOKENLEDGER_SIGNING_KEY_FILE": str(key.path),
        "TOKENLEDGER_PUBLIC_KEYS": ring_text(key, *trusted),
    }


OLD_HMAC_KEY = b"k" * 40
STRANGER = signer()


def hmac_headers(topic: str, key: bytes, value: bytes | None, issued_ms: int) -> list[Header]:
    """What the version that signed with the shared HMAC key wrote (v2)."""
    old = hmac_migration.HmacKeys((OLD_HMAC_KEY,))
    return [
        *hmac_migration.headers(old, topic, key, value, issued_ms),
        (ISSUED_HEADER, str(issued_ms).encode()),
    ]


def forgeries(topic: str, key: bytes, value: bytes, issued_ms: int) -> list[list[Header] | None]:
    """The same record unsigned, signed by a stranger's key, and signed with HMAC."""
    return [
        None,
        STRANGER.headers(topic, key, value, issued_ms),
        hmac_headers(topic, key, value, issued_ms),
    ]


def refusals(count: int = 1) -> dict[str, int]:
    """A reader's refusals by reason after ``count`` rounds of ``forgeries``."""
    return {
        "unsigned": count,
        f"signed by key {STRANGER.key_id!r}, which is not in TOKENLEDGER_PUBLIC_KEYS": count,
        "signed with the shared HMAC key, which readers no longer accept; re-sign it with "
        "Ed25519 (docs/security.md)": count,
    }

"""The writers' keys: `tokenledger keys generate|public`, private key files with one-line
errors for bad ones, and a writer's key and ring that must agree before it signs anything;
the edge refuses to start when handed a writer's key."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from tests.helpers.cli import one_line_error, tl
from tests.helpers.signing_keys import key_file, writer_env
from tokenledger.signing import PublicKeyring, key_id
from tokenledger.streams.admin.signer import load_private, writer_keys
from tokenledger.streams.edge import keys as edge_keys


def test_generate_writes_a_private_key_for_its_owner_only_and_prints_its_public_key(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "worker.pem"
    done = tl(cli_env, "keys", "generate", "--out", str(out))
    assert done.returncode == 0, done.stderr
    public = load_private(out).public_key()
    assert PublicKeyring.parse(done.stdout).ids == (key_id(public),)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert f"key id {key_id(public)}" in done.stderr
    again = tl(cli_env, "keys", "generate", "--out", str(out))
    one_line_error(again, 2, f"{out} exists; a key file is never overwritten")
    one_line_error(tl(cli_env, "keys", "generate"), 2, "keys generate needs --out FILE")


def test_public_prints_the_ring_of_private_public_and_ed25519_files(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    worker, admin = key_file(tmp_path, "worker"), key_file(tmp_path, "admin")
    pem = tmp_path / "admin.pub"
    public = admin.signer.private.public_key()
    pem.write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    line = tmp_path / "worker.txt"
    line.write_text(worker.public + "\n")
    done = tl(cli_env, "keys", "public", str(worker.path), str(pem), str(line))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{worker.public},{admin.public},{worker.public}\n"
    assert f"{pem}: key id {admin.id}" in done.stderr


def _rsa() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _encrypted() -> bytes:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw"))


BAD_FILES: dict[str, tuple[Callable[[], bytes] | None, str]] = {
    "missing": (None, "cannot read the key file {path}: No such file or directory"),
    "broken": (
        lambda: b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
        "{path} is not a readable PEM private key",
    ),
    "rsa": (_rsa, "{path} is not an Ed25519 private key (it holds RSAPrivateKey)"),
    "encrypted": (_encrypted, "{path} is encrypted; give an unencrypted PKCS#8 key"),
    "text": (lambda: b"hello", "{path} is not a private key file (PEM); make one with"),
}


def test_bad_private_key_files_are_one_line_errors(cli_env: dict[str, str], tmp_path: Path) -> None:
    other = key_file(tmp_path, "other").public
    for case, (make, starts) in BAD_FILES.items():
        path = tmp_path / f"{case}.pem"
        if make is not None:
            path.write_bytes(make())
        env = {"TOKENLEDGER_SIGNING_KEY_FILE": str(path), "TOKENLEDGER_PUBLIC_KEYS": other}
        with pytest.raises(ValueError) as refused:
            writer_keys(env)
        assert str(refused.value).startswith(starts.format(path=path)), case
    # as the commands say it
    rsa_file = tmp_path / "rsa.pem"
    env = {
        **cli_env,
        "TOKENLEDGER_SIGNING_KEY_FILE": str(rsa_file),
        "TOKENLEDGER_PUBLIC_KEYS": other,
    }
    one_line_error(tl(env, "budget", "list"), 2, f"{rsa_file} is not an Ed25519 private key")
    one_line_error(
        tl(cli_env, "keys", "public", str(tmp_path / "encrypted.pem")),
        2,
        f"{tmp_path / 'encrypted.pem'} is encrypted; give an unencrypted PKCS#8 key",
    )


def test_a_writers_key_and_ring_must_agree(tmp_path: Path) -> None:
    worker, admin = key_file(tmp_path, "worker"), key_file(tmp_path, "admin")
    signer, ring = writer_keys(writer_env(worker, admin))
    assert signer is not None and ring is not None
    assert (signer.key_id, ring.ids) == (worker.id, (worker.id, admin.id))
    assert writer_keys({}) == (None, None)
    mistakes = {
        "TOKENLEDGER_SIGNING_KEY_FILE is set but TOKENLEDGER_PUBLIC_KEYS is not: unsigned "
        "records would count; set TOKENLEDGER_PUBLIC_KEYS (`tokenledger keys public FILE...`)": {
            "TOKENLEDGER_SIGNING_KEY_FILE": str(worker.path)
        },
        "TOKENLEDGER_PUBLIC_KEYS is set but TOKENLEDGER_SIGNING_KEY_FILE is not: readers "
        "would refuse the unsigned records this writes": {"TOKENLEDGER_PUBLIC_KEYS": admin.public},
        f"the key in TOKENLEDGER_SIGNING_KEY_FILE (id {worker.id}) is not in "
        "TOKENLEDGER_PUBLIC_KEYS: readers would refuse what it signs": {
            "TOKENLEDGER_SIGNING_KEY_FILE": str(worker.path),
            "TOKENLEDGER_PUBLIC_KEYS": admin.public,
        },
        "TOKENLEDGER_LEGACY_HMAC_KEY is only read next to TOKENLEDGER_SIGNING_KEY_FILE "
        "(migration)": {"TOKENLEDGER_LEGACY_HMAC_KEY": "k" * 40},
    }
    for message, env in mistakes.items():
        with pytest.raises(ValueError) as refused:
            writer_keys(env)
        assert str(refused.value) == message


def test_the_edge_refuses_to_start_with_a_writers_key_or_the_old_shared_key(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    from tokenledger.streams.edge.app import public_keys

    worker = key_file(tmp_path, "worker")
    for env, message in (
        (
            writer_env(worker),
            "TOKENLEDGER_SIGNING_KEY_FILE is set, but the edge only verifies "
            "signals: give it TOKENLEDGER_PUBLIC_KEYS and keep signing keys on the workers and "
            "the admin host",
        ),
        (
            {"TOKENLEDGER_LEGACY_HMAC_KEY": "k" * 40},
            "TOKENLEDGER_LEGACY_HMAC_KEY is set, but "
            "the edge only verifies signals: give it TOKENLEDGER_PUBLIC_KEYS and keep signing "
            "keys on the workers and the admin host",
        ),
    ):
        with pytest.raises(ValueError) as refused:
            public_keys(env)
        assert str(refused.value) == message
    assert public_keys({"TOKENLEDGER_PUBLIC_KEYS": worker.public}) == PublicKeyring.parse(
        worker.public
    )
    api = {"keys": [edge_keys.entry("checkout", ["*"], edge_keys.new_key())]}
    env = {**cli_env, "TOKENLEDGER_EDGE_KEYS": json.dumps(api)}
    one_line_error(
        tl({**env, **writer_env(worker)}, "serve"),
        2,
        "TOKENLEDGER_SIGNING_KEY_FILE is set, but the edge only verifies signals",
    )
    one_line_error(
        tl({**env, "TOKENLEDGER_SIGNING_KEY": "k" * 40}, "serve"),
        2,
        "TOKENLEDGER_SIGNING_KEY (a shared HMAC key) is no longer read",
    )

"""Install tiktoken's rank files for offline use, from the npm package ``tiktoken``.

tiktoken downloads its ranks at first use and caches them under ``$TIKTOKEN_CACHE_DIR``
in a file named by the SHA-1 of the download address, checked against a pinned SHA-256.
The npm package ships the same ranks as JSON (``encoders/<name>.json``: a ``bpe_ranks``
string of lines ``PREFIX OFFSET TOKEN TOKEN ...``, base64 tokens numbered from OFFSET).
Written out as ``TOKEN RANK`` lines they are byte-identical to tiktoken's files, so the
pinned hash is verified before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess  # noqa: S404 - runs npm pack with a fixed argument list
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenledger.streams.errors import UserError

log = logging.getLogger(__name__)

NPM_PACKAGE = "tiktoken@1.0.22"


@dataclass(frozen=True)
class RankFile:
    encoding: str
    cache_name: str
    """SHA-1 of the address tiktoken would download from: its cache file name."""
    sha256: str
    """The hash tiktoken pins for this encoding."""


RANK_FILES = (
    RankFile(
        "cl100k_base",
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    RankFile(
        "o200k_base",
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
)


def ranks_from_npm_json(document: bytes) -> bytes:
    """The ``.tiktoken`` file for one ``encoders/<name>.json`` of the npm package."""
    lines: list[str] = []
    for line in json.loads(document)["bpe_ranks"].split("\n"):
        if not line:
            continue
        _prefix, offset, *tokens = line.split(" ")
        start = int(offset)
        lines.extend(f"{token} {start + i}\n" for i, token in enumerate(tokens))
    return "".join(lines).encode()


def installed(cache_dir: Path) -> bool:
    return all(_verified(cache_dir / f.cache_name, f.sha256) for f in RANK_FILES)


def _verified(path: Path, sha256: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    except OSError:
        return False


def install(
    cache_dir: Path, progress: Callable[[str], None] = log.info, timeout_s: float = 300.0
) -> Path:
    """Make ``cache_dir`` a working TIKTOKEN_CACHE_DIR for cl100k_base and o200k_base;
    the download gets ``timeout_s`` (npm's own timeouts are minutes, with retries)."""
    if installed(cache_dir):
        return cache_dir
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(
            "npm not found on PATH: tiktoken's rank files come from the npm package "
            f"{NPM_PACKAGE} (Debian: apt-get install npm)"
        )
    progress(f"fetching tiktoken rank files from the npm package {NPM_PACKAGE}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = _npm_pack(npm, Path(tmp), timeout_s)
        for f in RANK_FILES:
            data = _ranks(tarball, f.encoding)
            actual = hashlib.sha256(data).hexdigest()
            if actual != f.sha256:
                raise UserError(
                    f"{f.encoding} ranks from {NPM_PACKAGE} have sha256 {actual[:12]}, "
                    f"tiktoken pins {f.sha256[:12]}; not installing them"
                )
            partial = cache_dir / f"{f.cache_name}.partial"
            partial.write_bytes(data)
            partial.replace(cache_dir / f.cache_name)
    progress(f"tiktoken ranks verified in {cache_dir}")
    return cache_dir


_AGAIN = (
    "check the network and npm's registry setting (`npm config get registry`), then run "
    "`tokenledger setup` again"
)


def _npm_pack(npm: str, into: Path, timeout_s: float) -> Path:
    """The package's tarball, fetched by npm (its registry, proxy and cache settings apply);
    a download that hangs or breaks off is one line."""
    try:
        done = subprocess.run(  # noqa: S603
            [npm, "pack", NPM_PACKAGE, "--json", "--pack-destination", str(into)],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"npm pack {NPM_PACKAGE} did not finish within {timeout_s:g}s; {_AGAIN}"
        ) from None
    tarballs = list(into.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        why = _npm_error(done.stdout, done.stderr, done.returncode)
        raise UserError(f"npm pack {NPM_PACKAGE} failed ({why}); {_AGAIN}")
    return tarballs[0]


def _npm_error(stdout: str, stderr: str, status: int) -> str:
    """npm's error code and summary from its --json answer, else its last stderr line."""
    try:
        error = json.loads(stdout)["error"]
        return f"{error['code']}: {error['summary']}".replace("\n", " ")[:300]
    except (ValueError, KeyError, TypeError):
        lines = [line for line in stderr.splitlines() if line.strip()]
        return lines[-1][:300] if lines else f"exit status {status}"


def _ranks(tarball: Path, encoding: str) -> bytes:
    name = f"package/encoders/{encoding}.json"
    try:
        with tarfile.open(tarball) as tar:
            member = tar.extractfile(name)
            if member is None:
                raise KeyError(name)
            return ranks_from_npm_json(member.read())
    except (tarfile.TarError, OSError, KeyError, ValueError) as exc:
        raise UserError(f"{NPM_PACKAGE} has no readable {name} ({type(exc).__name__})") from None

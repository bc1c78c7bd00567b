"""Where the source tree is, and which of its modules are the SDK."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tokenledger"
CONTRACT = PACKAGE / "contract"
SERVER = PACKAGE / "streams"


def sdk_modules() -> list[Path]:
    """What `pip install tokenledger` gives a service: the package minus the contract and
    the server side."""
    return [
        p for p in PACKAGE.rglob("*.py") if SERVER not in p.parents and CONTRACT not in p.parents
    ]

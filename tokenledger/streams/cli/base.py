"""What every command module shares: the handler and registration types, and a parser
whose usage mistakes are one line."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import NoReturn

from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError

log = logging.getLogger("tokenledger")
"""Progress lines (stderr, silenced by -q)."""

Handler = Callable[[argparse.Namespace, Settings], int]
Add = Callable[[str, Handler, str], argparse.ArgumentParser]
"""add(name, handler, help) -> the subcommand's parser, for its arguments."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")

"""The `tokenledger` command line: one module per command group; handlers parse arguments
and call a stage."""

from tokenledger.streams.cli.main import commands, main

__all__ = ["commands", "main"]

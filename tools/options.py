"""Options that default from environment variables, as labgrid (`LG_PLACE`) and mpremote do.

A technician sets `KAGI_PORT`, `KAGI_BOARD`, `KAGI_LINK`… once in a shell and then types only the
command: `kagi board flash`. An option given on the command line wins over its variable.

| variable | option | used by |
| --- | --- | --- |
| `KAGI_BOARD` | `--board` | `kagi board flash`, `verify` |
| `KAGI_PORT` | `--port` | `kagi board flash`, `verify` (the board's USB console) |
| `KAGI_LINK` | `--link` | `kagi board selftest`, `flash` (the link port: the unit's `board`) |
| `KAGI_TIMEOUT` | `--timeout` | `kagi board flash`, `verify` |
| `KAGI_TECHNICIAN` | `--technician` | `kagi board selftest` |
| `KAGI_UNIT_CONFIG` | `--config` | `kagi unit monitor`, `provision` |
| `KAGI_DEBUG` | `--debug` | every command: tracebacks instead of one-line errors |
"""

from __future__ import annotations

import argparse
import os
from typing import Any


class MissingOption(Exception):
    """An option given neither on the command line nor by its environment variable."""


def env_option(
    parser: argparse.ArgumentParser, flag: str, env: str, help: str, **kwargs: Any
) -> None:
    """`flag`, defaulting to `$env` when set (else to `default`)."""
    fallback = kwargs.pop("default", None)
    parser.add_argument(
        flag, default=os.environ.get(env) or fallback, help=f"{help} (default: ${env})", **kwargs
    )


def need(args: argparse.Namespace, name: str, flag: str, env: str) -> Any:
    value = getattr(args, name, None)
    if value is None or value == "":
        raise MissingOption(f"{flag} is needed (or set {env})")
    return value


def env_flag(env: str) -> bool:
    """A yes/no variable: set and not 0, no, false or off."""
    return os.environ.get(env, "").strip().lower() not in ("", "0", "no", "false", "off")


def debug_option(parser: argparse.ArgumentParser) -> None:
    """`--debug` on a subcommand too (`kagi board flash --debug`), without overriding
    `kagi --debug` or KAGI_DEBUG when it is not given here."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error (default: $KAGI_DEBUG)",
    )

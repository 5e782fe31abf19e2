"""How a `kagi` command refuses: the errors it expects become one line naming what was wrong
and exit code 2 (with `--debug`, the traceback instead)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

Command = Callable[[argparse.Namespace], int]


def refusing(room: str, *errors: type[BaseException]) -> Callable[[Command], Command]:
    """Wrap a subcommand of `kagi <room>` so that `errors` print as `kagi <room> <cmd>: why`."""

    def wrap(func: Command) -> Command:
        def run(args: argparse.Namespace) -> int:
            try:
                return int(func(args))
            except errors as exc:
                if getattr(args, "debug", False):
                    raise
                print(f"kagi {room} {args.command}: {exc}", file=sys.stderr)
                return 2

        return run

    return wrap

"""The `kagi` command: one entry point, a subcommand per room (unit, cloud, board, card, sim)."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each room's module has `add_parser(rooms)`; its subcommands set `func`.
ROOMS = ("firmware.cli", "cloud.cli", "tools.card")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kagi", description="kagi car sharing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    rooms = parser.add_subparsers(dest="room", required=True, metavar="ROOM")
    for name in ROOMS:
        importlib.import_module(name).add_parser(rooms)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The `kagi` command: one entry point, a subcommand per room (unit, cloud, board, card, sim)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from firmware import cli as unit_cli

    parser = argparse.ArgumentParser(prog="kagi", description="kagi car sharing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    rooms = parser.add_subparsers(dest="room", required=True, metavar="ROOM")
    unit_cli.add_parser(rooms)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

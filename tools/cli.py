"""The `kagi` command: one entry point, a subcommand per room (unit, cloud, board, card, sim)."""

from __future__ import annotations

import argparse
import importlib
import sys

from tools.options import env_flag

# Each room's module has `add_parser(rooms)`; its subcommands set `func`.
ROOMS = {
    "unit": "firmware.cli",
    "cloud": "cloud.cli",
    "card": "tools.card",
    "board": "tools.board",
    "sim": "tools.sim.cli",
    "release": "tools.release_cli",
}
# Technician commands that live in tools/ but belong to another room's subcommands: that room's
# `add_parser` returns its subcommands and each module here adds to them (`add_commands(cmds)`).
# (The firmware does not import tools: the tools come to it.)
EXTRA_COMMANDS = {"firmware.cli": ("tools.provision", "tools.monitor")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kagi", description="kagi car sharing")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=env_flag("KAGI_DEBUG"),
        help="show tracebacks (default: $KAGI_DEBUG)",
    )
    rooms = parser.add_subparsers(dest="room", required=True, metavar="ROOM")
    for name in _needed(sys.argv[1:] if argv is None else argv):
        commands = importlib.import_module(name).add_parser(rooms)
        for extra in EXTRA_COMMANDS.get(name, ()):
            importlib.import_module(extra).add_commands(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def _needed(argv: list[str]) -> list[str]:
    """The room modules to load: only the named room's when there is one (a unit starts without
    importing the cloud's web stack), all of them for help and for mistakes."""
    words = [a for a in argv if not a.startswith("-")]
    if words and words[0] in ROOMS:
        return [ROOMS[words[0]]]
    return list(ROOMS.values())


if __name__ == "__main__":
    sys.exit(main())

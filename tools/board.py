"""`kagi board …`: flash an I/O board, verify it, self-test its wiring.

    kagi board flash --board pico --port /dev/ttyACM0 [--link /dev/ttyUSB0]
    kagi board verify --board pico --port /dev/ttyACM0
    kagi board selftest --link /dev/ttyUSB0 --technician "A. Tanaka"
    kagi board selftest --rig sim            # non-interactive, on the simulated board and car

`--port` is the board's USB console (MicroPython's REPL, where it is flashed); `--link` is the
port of its serial link to the car unit (the unit's `board = …`). Options default from the
environment (`tools/options.py`: KAGI_BOARD, KAGI_PORT, KAGI_LINK…). Every error is one line
naming what is wrong; `--debug` shows the traceback instead. Docs: docs/technicians.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from typing import Any, TextIO

from tools.options import MissingOption, debug_option, env_option, need


def add_parser(rooms: Any) -> Any:
    board = rooms.add_parser("board", help="the I/O board: flash, verify, self-test")
    cmds = board.add_subparsers(dest="command", required=True, metavar="COMMAND")

    flash = cmds.add_parser("flash", help="copy the firmware to a board, verify it there, start it")
    _board_and_port(flash)
    env_option(
        flash,
        "--link",
        "KAGI_LINK",
        "after the flash, check the board's hello on its link port (the unit's `board`)",
    )
    flash.set_defaults(func=_guarded(_flash))

    verify = cmds.add_parser("verify", help="check a board's files against the repository")
    _board_and_port(verify)
    verify.set_defaults(func=_guarded(_verify))

    selftest = cmds.add_parser(
        "selftest", help="step through every output and input of a wired board; save a report"
    )
    from tools import selftest as st  # light: the board link is imported when it runs

    st.add_arguments(selftest)
    debug_option(selftest)
    selftest.set_defaults(func=_guarded(st.run_command))
    return cmds


def _board_and_port(parser: argparse.ArgumentParser) -> None:
    env_option(parser, "--board", "KAGI_BOARD", "the board: pico or esp32")
    env_option(
        parser,
        "--port",
        "KAGI_PORT",
        "the board's USB console, e.g. /dev/ttyACM0 (default: the one USB serial port found)",
    )
    env_option(
        parser,
        "--timeout",
        "KAGI_TIMEOUT",
        "seconds the board may stay silent in an answer",
        type=float,
        default=3.0,
    )
    debug_option(parser)


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One line for an error the technician can act on; the traceback with --debug."""

    def run(args: argparse.Namespace) -> int:
        from tools.selftest import SelftestError

        known: list[type[Exception]] = [SelftestError, MissingOption, ValueError, OSError]
        with contextlib.suppress(ImportError):  # mpremote: flash and verify
            from tools.flash import FlashError

            known.append(FlashError)
        try:
            return func(args)
        except ImportError as exc:
            if getattr(args, "debug", False):
                raise
            print(
                f"kagi board {args.command}: needs {exc.name}: pip install 'kagi[board]'",
                file=sys.stderr,
            )
            return 2
        except tuple(known) as exc:
            if getattr(args, "debug", False):
                raise
            print(f"kagi board {args.command}: {exc}", file=sys.stderr)
            return 2

    return run


def _port(args: argparse.Namespace) -> str:
    from tools.flash import find_port

    port: str | None = args.port
    return port if port else find_port()


class ProgressBar:
    """A file's copy as a bar on a terminal; a line per file elsewhere (a log, a pipe)."""

    def __init__(self, out: TextIO | None = None, width: int = 30) -> None:
        self.out = out or sys.stderr
        self.width = width
        self.tty = self.out.isatty()

    def __call__(self, name: str, done: int, total: int) -> None:
        if self.tty:
            filled = self.width * done // total if total else self.width
            bar = "#" * filled + "." * (self.width - filled)
            pct = 100 * done // total if total else 100
            self.out.write(f"\r  {name:<16} [{bar}] {pct:3d}% {done / 1000:6.1f} kB")
            if done >= total:
                self.out.write("\n")
            self.out.flush()
        elif done >= total:
            self.out.write(f"  {name:<16} {total / 1000:6.1f} kB written\n")
            self.out.flush()


def _flash(args: argparse.Namespace) -> int:
    from tools.flash import flash, hello_on_link

    board = need(args, "board", "--board", "KAGI_BOARD")
    port = _port(args)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = flash(port, board, ProgressBar(), args.timeout, say)
    if result.written:
        print(
            f"flashed {board} build {result.build}: wrote {', '.join(result.written)} "
            f"(SHA-256 checked on the board); {len(result.kept)} already right"
        )
    else:
        print(f"{board} build {result.build}: every file already right, nothing written")
    if result.removed:
        print(f"removed leftovers: {', '.join(result.removed)}")
    if args.link:
        hello = hello_on_link(args.link)
        if hello.build != result.build:
            print(
                f"kagi board flash: the board on {args.link} says build {hello.build or 'none'}, "
                f"not {result.build}: is --link the port of this board?",
                file=sys.stderr,
            )
            return 1
        print(
            f"{args.link}: the board says hello: {hello.board} firmware {hello.firmware}, "
            f"pin map {hello.pinmap}, build {hello.build}"
        )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from tools.flash import verify

    board = need(args, "board", "--board", "KAGI_BOARD")
    result = verify(_port(args), board, args.timeout)
    for check in result.files:
        mark = "ok" if check.state == "ok" else check.state.upper()
        print(f"  {check.name:<16} {mark}")
    if result.others:
        print(f"  (also on the board, not the firmware's: {', '.join(result.others)})")
    if result.ok:
        print(f"{board}: the board holds build {result.build}, every file as in the repository")
        return 0
    bad = [c.name for c in result.files if c.state != "ok"]
    print(
        f"{board}: the board differs from build {result.build} "
        f"(its manifest says {result.board_build or 'nothing'}): {', '.join(bad)}; "
        "`kagi board flash` writes exactly these"
    )
    return 1

"""`kagi sim run` (`make run`): a whole simulated car and its cloud, to drive in the browser.

It starts the sim rig (`--rig sim`, the default: the cloud on SQLite with its embedded broker;
`--rig sim-prod`: PostgreSQL and Mosquitto over TLS), parks the car, reserves it for the demo
driver Bob with its window open, prints the live view's address and serves it until Ctrl-C or
SIGTERM, then stops every process it started. The run folder keeps each part's log until the
next run empties it; a folder that is not a run folder is refused, never emptied.

This module imports nothing heavy until the command runs, so `kagi sim run --help` answers from
an installed wheel at once; the command itself needs `pip install 'kagi[sim]'`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

MARKER = ".kagi-sim"  # the file that makes a folder a run folder, to be emptied at each start
EXTRA = "pip install 'kagi[sim]'"  # what `kagi sim run` needs beyond kagi itself


class UsageError(Exception):
    pass


def add_parser(rooms: Any) -> Any:
    sim = rooms.add_parser("sim", help="a whole simulated car and its cloud")
    cmds = sim.add_subparsers(dest="command", required=True, metavar="COMMAND")
    text = (
        "start the cloud, the I/O board's firmware and the car unit; reserve the demo car for "
        "Bob; serve the live view until Ctrl-C"
    )
    run = cmds.add_parser("run", help=text, description=text)
    run.add_argument("--port", type=int, default=8000, help="the page's port (default 8000)")
    run.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    run.add_argument(
        "--folder", type=Path, default=Path(".kagi-run"), help="the run folder (default .kagi-run)"
    )
    run.add_argument(
        "--rig",
        default="sim",
        help="a sim rig file: sim (SQLite, embedded broker; the default), sim-prod (PostgreSQL, "
        "Mosquitto over TLS), or a path",
    )
    run.set_defaults(func=run_command)
    return cmds


def prepare(folder: Path) -> None:
    """An empty run folder: one of ours is emptied; any other folder that is not empty is
    refused (never delete what someone else keeps there)."""
    if folder.exists():
        if not folder.is_dir():
            raise UsageError(f"--folder {folder}: not a folder")
        if any(folder.iterdir()) and not (folder / MARKER).exists():
            raise UsageError(
                f"--folder {folder}: not empty and not a run folder (no {MARKER} in it); "
                "name a new or empty folder"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(
        "kagi sim run's run folder: emptied at each start.\n", encoding="utf-8"
    )


def check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); "
                "is another kagi sim running? try --port 8001"
            ) from None


def first_time(now: dt.datetime) -> dt.datetime:
    """The rig's clock at the start: 15 minutes before a 15-minute mark, so that car time is
    about real time and the demo reservation's window opens a minute later."""
    from tools.rig.phone import next_mark

    return next_mark(now + dt.timedelta(minutes=15)) - dt.timedelta(minutes=15)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _patience(signum: int, frame: FrameType | None) -> None:
    print("kagi sim: stopping, one moment…", file=sys.stderr, flush=True)


def run_command(args: argparse.Namespace) -> int:
    try:
        from cloud.demo import CAR, DEMO_PASSWORD, STAFF_PASSWORD
        from tools.rig.phone import JST
        from tools.rig.rigfile import RigError, load_rig
        from tools.sim.live.car import DRIVER, LiveCar, sites
        from tools.sim.live.server import LiveServer
        from tools.sim.rig import SimRig
    except ImportError as exc:
        print(f"kagi sim: {exc.name or exc} is missing: {EXTRA}", file=sys.stderr)
        return 2
    folder: Path = args.folder.resolve()
    try:
        rig_file = load_rig(args.rig)
        if rig_file.kind != "sim":
            raise UsageError(f"--rig {args.rig}: a {rig_file.kind} rig; kagi sim runs sim rigs")
        check_port(args.host, args.port)
        prepare(folder)
    except (UsageError, RigError) as exc:
        print(f"kagi sim: {exc}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops it as Ctrl-C does
    began = time.monotonic()
    print(
        f"kagi sim: starting the cloud, the I/O board and the car unit ({rig_file.name}: "
        f"{rig_file.description}) in {folder} …",
        flush=True,
    )
    rig = SimRig(folder / "rig", rig_file, start=first_time(dt.datetime.now(JST)))
    car: LiveCar | None = None
    try:
        rig.start()
        car = LiveCar(rig)
        booking = car.setup_demo()
        car.start_ticker()
        server = LiveServer(car, args.host, args.port)
        start = dt.datetime.fromisoformat(booking["start"])
        end = dt.datetime.fromisoformat(booking["end"])
        print(
            f"kagi sim: {CAR} is ready ({time.monotonic() - began:.1f} s); Bob's reservation "
            f"{start:%H:%M}–{end:%H:%M}, its window is open: tap Bob's card",
            flush=True,
        )
        pages = sites(rig.cloud.api_url)
        print(
            f"kagi sim: the phone site {pages['phone']} (log in as {DRIVER}, password "
            f"{DEMO_PASSWORD!r}); the operator console {pages['console']} (log in as ops, "
            f"password {STAFF_PASSWORD!r})",
            flush=True,
        )
        print(f"kagi sim: open {server.url}   (Ctrl-C stops everything)", flush=True)
        server.run()  # returns on Ctrl-C or SIGTERM, and raises it again for us
    except KeyboardInterrupt:
        pass
    except (RigError, AssertionError, OSError) as exc:
        print(f"kagi sim: the car could not start: {exc}\n{rig.logs()}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, _patience)
        signal.signal(signal.SIGTERM, _patience)
        if car is not None:
            car.close()
        rig.close()
    print(f"kagi sim: stopped; each part's log is in {folder / 'rig'}", flush=True)
    return 0

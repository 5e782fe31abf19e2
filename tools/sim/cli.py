"""`python -m hil_tests.live [--port 8000] [--host 127.0.0.1] [--folder .kagi-run]` (`make run`):
start the sim rig and the demo reservation, print the page's address, serve it until Ctrl-C or
SIGTERM, then stop every process it started. The run folder keeps each part's log until the next
run empties it.
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

from hil_tests.live.car import LiveCar
from hil_tests.live.server import LiveServer
from hil_tests.phone import JST
from hil_tests.rig import CAR, RigError, SimRig, load_rig, next_mark

MARKER = ".kagi-live"  # the file that makes a folder the live view's, to be emptied at each start


class UsageError(Exception):
    pass


def prepare(folder: Path) -> None:
    """An empty run folder: one of ours is emptied; any other folder that is not empty is
    refused (never delete what someone else keeps there)."""
    if folder.exists():
        if not folder.is_dir():
            raise UsageError(f"--folder {folder}: not a folder")
        if any(folder.iterdir()) and not (folder / MARKER).exists():
            raise UsageError(
                f"--folder {folder}: not empty and not a live-view folder (no {MARKER} in it); "
                "name a new or empty folder"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(
        "The kagi live view's run folder (python -m hil_tests.live): emptied at each start.\n",
        encoding="utf-8",
    )


def check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); "
                "is another live view running? try --port 8001"
            ) from None


def first_time() -> dt.datetime:
    """The rig's clock at the start: 15 minutes before a 15-minute mark, so that car time is
    about real time and the demo reservation's window opens a minute later."""
    return next_mark(dt.datetime.now(JST) + dt.timedelta(minutes=15)) - dt.timedelta(minutes=15)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _patience(signum: int, frame: FrameType | None) -> None:
    print("kagi live: stopping, one moment…", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil_tests.live", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="the page's port (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument(
        "--folder", type=Path, default=Path(".kagi-run"), help="the run folder (default .kagi-run)"
    )
    args = parser.parse_args(argv)
    folder: Path = args.folder.resolve()
    try:
        check_port(args.host, args.port)
        prepare(folder)
    except UsageError as exc:
        print(f"kagi live: {exc}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops it as Ctrl-C does
    began = time.monotonic()
    print(
        f"kagi live: starting the cloud, the I/O board and the car unit in {folder} …", flush=True
    )
    rig = SimRig(folder / "rig", load_rig("sim"), start=first_time())
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
            f"kagi live: {CAR} is ready ({time.monotonic() - began:.1f} s); Bob's reservation "
            f"{start:%H:%M}–{end:%H:%M}, its window is open: tap Bob's card",
            flush=True,
        )
        print(f"kagi live: open {server.url}   (Ctrl-C stops everything)", flush=True)
        server.run()  # returns on Ctrl-C or SIGTERM, and raises it again for us
    except KeyboardInterrupt:
        pass
    except (RigError, AssertionError, OSError) as exc:
        print(f"kagi live: the car could not start: {exc}\n{rig.logs()}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, _patience)
        signal.signal(signal.SIGTERM, _patience)
        if car is not None:
            car.close()
        rig.close()
    print(f"kagi live: stopped; each part's log is in {folder / 'rig'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

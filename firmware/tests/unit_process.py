"""A real `kagi unit run` process for tests: its config, its control socket, its database.

`UnitProcess` starts the unit on a folder (config, SQLite database, control socket), waits until
the control socket answers, sends JSON-line requests and can SIGKILL it at any moment.
`read_database` reads what the unit left on disk, read-only, without going through the firmware.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

CARD_KEY = "00112233445566778899aabbccddeeff"
# Where the manual clock of a test unit starts: before every fixed instant the tests set it to
# (firmware.tests.harness.START and the like), whatever today's date is.
CLOCK_START = 1_767_193_200.0  # 2026-01-01 00:00 JST


def write_config(
    folder: Path, car_id: str = "car-crash", extra: str = "", clock_start: float = CLOCK_START
) -> Path:
    """A unit config in `folder`: sim adapters, no cloud, the manual clock starting at
    `clock_start`, a control socket."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "unit.toml"
    path.write_text(
        "[unit]\n"
        f'car_id = "{car_id}"\n'
        f'card_key = "{CARD_KEY}"\n'
        'database = "unit.db"\n'
        'reader = "sim:"\n'
        'board = "sim:"\n'
        'cloud = "none:"\n'
        'clock = "manual"\n'
        f"clock_start = {clock_start}\n"
        'control = "control.sock"\n' + extra,
        encoding="utf-8",
    )
    return path


def kagi_command() -> list[str]:
    """The `kagi` console script of this interpreter's environment (or its module)."""
    script = Path(sys.executable).with_name("kagi")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "tools.cli"]


class UnitDied(RuntimeError):
    pass


class UnitProcess:
    """One `kagi unit run --config FOLDER/unit.toml`; restartable on the same folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "unit.toml"
        if not self.config.exists():
            write_config(folder)
        self.database = folder / "unit.db"
        self.socket_path = folder / "control.sock"
        self.log_path = folder / "unit.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self.starts = 0

    # ---- life cycle -------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the process; do not wait for it."""
        assert self.proc is None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts} ----\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*kagi_command(), "unit", "run", "--config", str(self.config)],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def start(self, timeout: float = 10.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll until the control socket accepts a connection (the unit has restored by then)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise UnitDied(f"the unit exited with {self.proc.returncode}:\n{self.log_tail()}")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.socket_path))
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"no control socket after {timeout} s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.005)
                continue
            sock.settimeout(timeout)
            self._sock = sock
            self._reader = sock.makefile("rb")
            return

    def kill(self) -> None:
        """SIGKILL: a power cut as far as the process can tell. Waits until it is gone."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def drop_connection(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._reader = self._sock = None

    def close(self) -> None:
        """Kill whatever is left (a fixture finalizer)."""
        self.kill()
        self.drop_connection()

    # ---- the control socket -----------------------------------------------------------------

    def send(self, request: dict[str, Any]) -> None:
        """Write one request without waiting for its reply."""
        assert self._sock is not None, "not connected"
        self._sock.sendall(json.dumps(request).encode() + b"\n")

    def reply(self) -> dict[str, Any]:
        assert self._reader is not None, "not connected"
        line = self._reader.readline()
        if not line:
            raise UnitDied(f"the unit closed the control socket:\n{self.log_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def leftover_reply(self) -> dict[str, Any] | None:
        """After a kill: the reply that had reached us before the process died, if any."""
        assert self._reader is not None, "not connected"
        try:
            line = self._reader.readline()
        except ConnectionResetError:
            return None  # it died with the request unread: there was no reply
        return json.loads(line) if line.endswith(b"\n") else None

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.reply()

    def status(self) -> dict[str, Any]:
        answer = self.request({"op": "status"})
        assert answer["ok"], answer
        status: dict[str, Any] = answer["status"]
        return status

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def read_database(path: Path) -> dict[str, Any]:
    """Everything the unit keeps, read-only and straight from SQLite (WAL included)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT snapshot FROM trip_state WHERE id = 1").fetchone()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        outbox = [
            {"seq": seq, "id": eid, "type": kind, "at": at, "data": json.loads(data)}
            for seq, eid, kind, at, data in db.execute(
                "SELECT seq, id, type, at, data FROM outbox ORDER BY seq"
            )
        ]
        cards: dict[str, list[str]] = {}
        for card, driver in db.execute("SELECT card_hash, driver_id FROM cards"):
            cards.setdefault(driver, []).append(card)
        drivers = [
            {"id": d, "licence_expiry": exp, "cards": sorted(cards.get(d, []))}
            for d, exp in db.execute("SELECT id, licence_expiry FROM drivers ORDER BY id")
        ]
        reservations = [
            {"id": r, "driver_id": d, "start": s, "end": e}
            for r, d, s, e in db.execute(
                'SELECT id, driver_id, start, "end" FROM reservations ORDER BY start, id'
            )
        ]
        commands = dict(db.execute("SELECT id, result_seq FROM commands").fetchall())
    finally:
        db.close()
    return {
        "snapshot": json.loads(row[0]) if row else None,
        "next_seq": int(meta["next_seq"]),
        "bookings": {
            "version": int(meta["bookings_version"]),
            "reservations": reservations,
            "drivers": drivers,
        },
        "outbox": outbox,
        "commands": commands,
    }

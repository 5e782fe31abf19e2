"""A real `kagi unit run` process: started on its folder, spoken to over its control socket.

`UnitProcess` starts the unit on a folder (`unit.toml`, its database, its control socket), waits
until the control socket answers, sends JSON-line requests, reads its log, and can SIGKILL it at
any moment (a power cut). The rigs run the car unit with it; so do the firmware's and the tools'
process tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, BinaryIO

from tools.rig.processes import kagi_command


class UnitDied(RuntimeError):
    pass


class UnitProcess:
    """One `kagi unit run --config FOLDER/unit.toml`; restartable on the same folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "unit.toml"
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

    def saved(self) -> dict[str, Any]:
        """`kagi unit state`: the trip state, bookings and outbox the unit saved (read-only)."""
        done = subprocess.run(
            [*kagi_command(), "unit", "state", "--config", str(self.config)],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise UnitDied(f"kagi unit state → {done.returncode}: {done.stderr.strip()}")
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def log_size(self) -> int:
        """Where the unit's log ends now (it only grows: the unit appends to it)."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

"""The `kagi` commands a rig runs, and the cloud as a process (`kagi cloud serve`).

Every rig runs the cloud and the car unit on this machine the way an operator and a technician
would: `kagi cloud demo`, `kagi cloud serve`, `kagi unit provision`, `kagi unit run`. A step that
fails raises `RigError` with what the command said.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tools.rig.rigfile import RigError
from tools.rig.wait import wait_for


def kagi_command() -> list[str]:
    """The `kagi` console script of this interpreter's environment (or its module)."""
    script = Path(sys.executable).with_name("kagi")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "tools.cli"]


def run_kagi(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
    stdin: str | None = None,
) -> str:
    """Run one `kagi` command to its end (`stdin` its input); its output, or RigError with
    what it said."""
    done = subprocess.run(
        [*kagi_command(), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode not in ok:
        raise RigError(f"kagi {' '.join(args)} → {done.returncode}\n{done.stdout}{done.stderr}")
    return done.stdout


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class CloudProcess:
    """`kagi cloud serve ARGS` in `folder`, its log in `cloud.log`; `start()` returns once its
    API listens on `port`."""

    def __init__(
        self, folder: Path, port: int, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        self.folder = folder
        self.port = port
        self.args = ["cloud", "serve", "--port", str(port), *args]
        self.env = dict(env or {})
        self.log_path = folder / "cloud.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*kagi_command(), *self.args],
                cwd=self.folder,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RigError(f"kagi cloud serve exited:\n{self.log_tail()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, "the cloud's API to listen", timeout=timeout)

    def stop(self) -> None:
        stop(self.proc)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

"""A car unit under `kagi unit launch` (SPEC O-OTA-3): the launcher, and the unit it starts from
the install slots; after an update the unit restarts into the new version, so each question to
its control socket connects afresh."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tools.rig.processes import kagi_command
from tools.rig.unit_process import UnitProcess


class LaunchedUnit(UnitProcess):
    """`kagi unit launch --slots SLOTS --config FOLDER/unit.toml`."""

    def __init__(self, folder: Path, slots: Path) -> None:
        super().__init__(folder)
        self.slots = slots

    def spawn(self) -> None:
        assert self.proc is None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*kagi_command(), "unit", "launch", "--slots", str(self.slots),
                 "--config", str(self.config)],
                cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip

    def status_now(self, timeout: float = 30.0) -> dict[str, Any]:
        """The status of whichever version runs now (it may be restarting: wait for it)."""
        deadline = time.monotonic() + timeout
        while True:
            self.drop_connection()
            try:
                self.wait_ready(timeout=max(0.1, deadline - time.monotonic()))
                return self.status()
            except (OSError, RuntimeError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        """SIGTERM the launcher (it ends the unit), as the car's service manager does."""
        self.drop_connection()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        self.proc = None

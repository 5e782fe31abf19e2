"""The unit's launcher (SPEC O-OTA-3): the small process that is never updated, which starts the
unit from the slot `firmware.slots` says, and holds a new version to its deadline.

Each start: `Slots.boot()` picks the slot; the unit runs from it as a child process (the slot's
folder first on its `PYTHONPATH`, `KAGI_SLOTS` naming the install folder so it can confirm). A
version on trial that does not confirm by its deadline is killed and the one before comes back;
one that stops before confirming is rolled back at the next start. The launcher then starts the
unit again, so a car is never left without a running unit.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from firmware.slots import Booted, Slots

ENV_SLOTS = "KAGI_SLOTS"


def confirm_from_env() -> bool:
    """Called by the unit once its self-check passed: it stays (whether it was on trial)."""
    root = os.environ.get(ENV_SLOTS)
    if not root:
        return False
    Slots(Path(root)).confirm()
    return True


@dataclass(frozen=True)
class Run:
    """One run of the unit: from which slot and version, and how it ended."""

    booted: Booted
    exit_code: int | None  # None: killed by the launcher at its deadline
    rolled_back: str | None


class Launcher:
    """Runs `command` from the slot `slots` boots; `clock` in seconds, as the slots'."""

    def __init__(
        self,
        slots: Slots,
        command: Sequence[str],
        poll: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.slots, self.command, self.poll, self.sleep = slots, list(command), poll, sleep
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def stop(self) -> None:
        """End the unit (SIGTERM) and the launcher's loop."""
        self._stopping = True
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()

    def run_once(self) -> Run:
        booted = self.slots.boot()
        folder = self.slots.slot_dir(booted.slot).resolve()  # never the pointer: it may move
        path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, ENV_SLOTS: str(self.slots.root)}
        child = self._child = subprocess.Popen(self.command, env=env)
        try:
            while True:
                code = child.poll()
                if code is not None:
                    return Run(booted, code, booted.rolled_back)
                deadline = self.slots.deadline() if booted.trial else None
                if deadline is not None and self.slots.clock() > deadline:
                    child.kill()
                    child.wait()
                    back = self.slots.roll_back(
                        "the new version did not pass its self-check in time"
                    )
                    return Run(booted, None, back.rolled_back)
                self.sleep(self.poll)
        finally:
            if child.poll() is None:
                child.terminate()
                child.wait(10)

    def run(self, restarts: int | None = None, backoff: float = 1.0) -> None:
        """Start the unit again each time it ends (`restarts` times; None: for ever)."""
        n = 0
        while (restarts is None or n < restarts) and not self._stopping:
            self.run_once()
            n += 1
            self.sleep(backoff)

"""A new version's start-up check (SPEC O-OTA-3): once the unit is up, it checks itself (its
store reads back, its trip state survives a save and restore, the board said hello, the reader
is open, the cloud is reached: `Core.self_check` over the adapters' status) and, when all pass,
tells the launcher it stays. Until then the launcher's deadline runs; a version that never
passes is rolled back by the launcher, not here."""

from __future__ import annotations

import logging
import threading
from typing import Any

from firmware.launcher import confirm_from_env

log = logging.getLogger(__name__)


def check(unit: Any) -> dict[str, Any]:
    """The start-up check's report, run on the runner's thread (the store's own)."""

    def run() -> dict[str, Any]:
        unit.store.load()  # raises if the store cannot be read
        return dict(unit.runner.core.self_check(unit.runner.parts()))

    return dict(unit.runner.submit(run).result(10))


def confirm_when_healthy(unit: Any, stop: threading.Event, poll: float = 0.25) -> bool:
    """Check until it passes (then confirm) or `stop`; whether it confirmed."""
    failing: list[str] = []
    while not stop.is_set():
        try:
            report = check(unit)
        except Exception as exc:  # the store, the runner: report it, keep trying
            report = {"passed": False, "checks": {"store": {"ok": False, "error": str(exc)}}}
        if report["passed"]:
            if confirm_from_env():
                log.info("start-up check passed: this version stays")
            if getattr(unit, "updates", None) is not None:
                unit.updates.poke()  # the update agent reports the outcome to the cloud
            return True
        now_failing = sorted(n for n, c in report["checks"].items() if not c["ok"])
        if now_failing != failing:
            log.warning("start-up check: waiting for %s", ", ".join(now_failing))
            failing = now_failing
        stop.wait(poll)
    return False

"""The car's side of a fleet configuration (SPEC O-OTA-4): timings and feature switches the
operator signed offline, offered by the cloud, applied between trips, reported.

`offer(version)` takes an offer; `step()` downloads and checks it with the same TUF checks as a
release (signature, hash, length, never older than what the car runs), checks it as the unit
would check its own file (the car's tables with the fleet's over them: unknown keys, bad types
refused, naming what), and hands it to `apply(version, body, trip)`, which runs on the runner's
thread: between trips it saves the configuration beside `unit.toml` (so a restart keeps it) and
the core runs with it from then on; during a trip it says why not, and the agent tries again.
Every step is reported (`report(step, **details)`), once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.config import (
    FLEET_FILE,
    ConfigError,
    TripConfig,
    UnitConfig,
    apply_fleet,
    check_fleet_config,
)
from firmware.runner import Runner
from firmware.update_fetch import UpdateRefused, fetch_config
from firmware.update_gate import install_refusal
from protocol.files import write_atomically

log = logging.getLogger(__name__)

Apply = Callable[[int, bytes, TripConfig], str | None]  # why not now, or None: applied
Report = Callable[..., None]


@dataclass
class ConfigAgent:
    unit: UnitConfig
    cloud_url: str
    trusted_root: bytes
    state: Path
    apply: Apply
    report: Report
    running: int = 0
    offered: int | None = None
    _said: tuple[str, int, str | None] | None = field(default=None, repr=False)

    def _say(self, step: str, version: int, reason: str | None = None, **details: Any) -> None:
        if self._said == (step, version, reason):
            return
        self._said = (step, version, reason)
        if reason is not None:
            details["reason"] = reason
        self.report(step, version=version, **details)

    def offer(self, version: int) -> None:
        if version == self.running:
            self.offered = None
            self._say("applied", version)  # it runs it already
            return
        if self.offered != version:
            self.offered = version
            self._say("offered", version)

    def step(self) -> str | None:
        """Do what can be done now; the step reached (None: nothing offered)."""
        version = self.offered
        if version is None:
            return None
        try:
            body, fetched = fetch_config(
                self.cloud_url, self.trusted_root, self.state, version, self.running
            )
        except UpdateRefused as exc:
            if exc.reason in ("interrupted", "unreachable"):
                self._say("waiting", version, exc.reason)
                return "waiting"
            return self._refuse(version, exc.reason, exc.detail)
        try:
            signed, tables = check_fleet_config(json.loads(body))
            if signed != version:
                raise ConfigError(f"version: the file says {signed}, it was signed as {version}")
            trip = apply_fleet(self.unit, tables, self.unit.raw_trip)
        except (ConfigError, ValueError) as exc:
            return self._refuse(version, "invalid", str(exc))
        why = self.apply(version, body, trip)
        if why is not None:
            self._say("waiting", version, why)
            return "waiting"
        self.running, self.offered = version, None
        self._say("applied", version, bytes=fetched)
        return "applied"

    def _refuse(self, version: int, reason: str, detail: str) -> str:
        self.offered = None
        self._say("refused", version, reason, detail=detail)
        return "refused"


def apply_between_trips(
    runner: Runner, folder: Path, version: int, body: bytes, trip: TripConfig
) -> str | None:
    """On the runner's thread: between trips, keep configuration `version` beside the unit's
    file and run with `trip` from now on (the cloud hears of it at once); else why not now."""
    core = runner.core
    assert core is not None
    why = install_refusal(core.state, core.overlay, core.bookings, runner.clock.now(), core.timing,
                          lead=0)  # fmt: skip
    if why is not None:
        return why
    write_atomically(folder / FLEET_FILE, body)
    runner.reconfigure(trip)
    runner.cloud.config_version = version
    runner.cloud.committed(core.snapshot(), core.bookings.version)
    log.info("updates: fleet configuration %s applied", version)
    return None

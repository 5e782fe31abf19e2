"""The car's side of an update, step by step (SPEC O-OTA-2, O-OTA-3): a version is offered;
the agent downloads and verifies it at once (that disturbs nobody), waits for the install gate,
then installs it beside the running version, puts it on trial and asks for a restart, after
which the launcher holds it to its deadline.

Every step is reported (`report(step, **details)`), as the cloud tracks each car's step:
offered, downloading, downloaded, waiting (and why), installed, refused or failed (and why).
`step()` does what can be done now and returns; the unit calls it from its own loop, so nothing
here runs on its own thread or sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.slots import SlotError, Slots
from firmware.update_fetch import StagedRelease, UpdateRefused, fetch_release

Report = Callable[..., None]


@dataclass
class UpdateAgent:
    """`gate()` says why not now (None: install now); `restart()` ends the unit so that the
    launcher starts the new version."""

    slots: Slots
    cloud_url: str
    trusted_root: bytes
    state: Path
    gate: Callable[[], str | None]
    restart: Callable[[], None]
    report: Report
    deadline_s: float = 300.0
    # once healthy: send the release's board firmware on (firmware/board_update.py); None: no
    # board console, a technician flashes the board
    board: Callable[[str], tuple[str, str]] | None = None
    offered: str | None = None
    staged: StagedRelease | None = None
    _said: tuple[str, str | None] | None = field(default=None, repr=False)

    def _say(self, step: str, reason: str | None = None, **details: Any) -> None:
        """Report a step, once: a step retried (a download cut again, a gate still shut for the
        same reason) is not reported again."""
        if self._said == (step, reason):
            return
        self._said = (step, reason)
        if reason is not None:
            details["reason"] = reason
        self.report(step, **details)

    def running_version(self) -> str:
        return self.slots.version(self.slots.running())

    def offer(self, version: str) -> None:
        """The cloud offers `version` (again, after a cut or a restart: it carries on)."""
        if version == self.running_version():
            self.offered = None
            self._say("healthy", version=version)  # already there: nothing to do
            return
        if self.offered != version:
            self.offered, self.staged, self._said = version, None, None
            self._say("offered", version=version)

    def step(self) -> str | None:
        """Do what can be done now; the step reached (None: nothing offered)."""
        version = self.offered
        if version is None:
            return None
        if self.staged is None:
            self._say("downloading", version=version)
            try:
                self.staged = fetch_release(
                    self.cloud_url, self.trusted_root, self.state, version,
                    running=self.running_version(),
                )  # fmt: skip
            except UpdateRefused as exc:
                if exc.reason in ("interrupted", "unreachable"):
                    self._say("downloading", exc.reason, version=version, detail=exc.detail)
                    return "downloading"  # the next step resumes it
                self.offered = None
                self._say("refused", exc.reason, version=version, detail=exc.detail)
                return "refused"
            self._say("downloaded", version=version, bytes=self.staged.fetched)
        why = self.gate()
        if why is not None:
            self._say("waiting", why, version=version)
            return "waiting"
        try:
            slot = self.slots.install(self.staged.unit_wheel(), version)
            self.slots.switch(slot, self.deadline_s)
        except (SlotError, OSError) as exc:
            self.offered = None
            self._say("failed", str(exc), version=version)
            return "failed"
        self._say("installed", version=version, slot=slot)
        self.offered = None
        self.restart()
        return "installed"

    def outcome(self) -> dict[str, Any] | None:
        """The last update's outcome as the launcher left it (healthy, or rolled back and why)."""
        return self.slots.outcome()

    def report_outcome(self) -> str | None:
        """Once the unit is up: report how the last update ended (healthy, or rolled back and
        why), once; the result reported (None: nothing new; "waiting": the board's firmware
        waits for the car to be between trips)."""
        done = self.slots.outcome()
        if done is None or done.get("reported"):
            return None
        result = str(done["result"])
        details = {"version": done["version"], "from_version": done.get("from_version")}
        if done.get("reason"):
            details["reason"] = done["reason"]
        if result == "healthy" and self.board is not None:
            state, said = self.board(str(done["version"]))
            if state == "waiting":
                self._say("waiting", said, version=done["version"])
                return "waiting"  # healthy once the board has its firmware too: later
            if state == "failed":
                result, details["reason"] = "failed", said
            else:
                details["board"] = said
        details["running"] = self.running_version()
        self.report(result, **details)
        self.slots.outcome_reported()
        return result

"""The board's firmware from a release (SPEC O-OTA-1, O-OTA-3): sent on by the car unit once
the unit itself is healthy on the new version, with the board's own fall-back.

The unit flashes the release's board files (verified by python-tuf with the rest of the release)
over the board's USB console, as `kagi board flash` does: only the files that differ, each
checked on the board before it is used, the manifest last. The new firmware must then say
hello on the unit's own board link with the release's build within `patience` seconds; if it
does not, the firmware before (the previous install slot's) is flashed back, and the unit
reports why. Only between trips (the install gate): a flash restarts the board.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware.board_flash import Firmware, FlashError, firmware, flash, from_files
from firmware.slots import Slots
from firmware.update_fetch import StagedRelease

log = logging.getLogger(__name__)

BoardBuild = Callable[[], str | None]  # the build the board's hello names now (None: link down)


@dataclass(frozen=True)
class BoardOutcome:
    result: str  # "kept" (it runs the release's already), "updated", "rolled_back"
    build: str
    reason: str = ""


def update_board(
    console: str,
    new: Firmware,
    previous: Firmware,
    build_now: BoardBuild,
    patience: float = 30.0,
    poll: float = 0.1,
) -> BoardOutcome:
    """Bring the board on `console` to `new`; back to `previous` if `new` does not say hello
    with its build on the unit's link (`build_now`) in time. FlashError if even that fails."""
    if build_now() == new.build:
        return BoardOutcome("kept", new.build)
    try:
        flash(console, new)
        if _says(build_now, new.build, patience, poll):
            log.info("board: firmware build %s flashed and running", new.build)
            return BoardOutcome("updated", new.build)
        reason = f"the board did not say hello with build {new.build} within {patience:g} s"
    except FlashError as exc:
        reason = f"the flash failed: {exc}"
    log.warning("board: %s; flashing build %s back", reason, previous.build)
    flash(console, previous)
    if not _says(build_now, previous.build, patience, poll):
        raise FlashError(f"{reason}; and build {previous.build} did not come back either")
    return BoardOutcome("rolled_back", previous.build, reason)


def _says(build_now: BoardBuild, build: str, patience: float, poll: float) -> bool:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if build_now() == build:
            return True
        time.sleep(poll)
    return False


@dataclass
class BoardSender:
    """The unit's part, after its new version is healthy: `__call__(version)` says
    ("waiting", why), ("done", what the board runs) or ("failed", why)."""

    console: str  # the board's USB console port
    slots: Slots
    release: Callable[[str], StagedRelease]  # the release's verified files (kept from before)
    board_kind: Callable[[], str | None]  # the board's name in its hello (None: link down)
    build_now: BoardBuild
    gate: Callable[[], str | None]
    patience: float = 30.0

    def __call__(self, version: str) -> tuple[str, str]:
        kind = self.board_kind()
        if kind is None:
            return "waiting", "the board link is down"
        files = self.release(version).board_files(kind)
        if not files:
            return "done", f"release {version} carries no firmware for a {kind} board"
        try:
            new = from_files(kind, {name: path.read_bytes() for name, path in files.items()})
        except FlashError as exc:
            return "failed", f"board firmware: {exc}"
        if self.build_now() == new.build:
            return "done", f"board build {new.build}"
        why = self.gate()
        if why is not None:
            return "waiting", why
        before = self.slots.other(self.slots.running())
        try:
            previous = firmware(kind, self.slots.slot_dir(before) / "boards")
            done = update_board(self.console, new, previous, self.build_now, self.patience)
        except FlashError as exc:
            return "failed", f"board firmware: {exc}"
        if done.result == "rolled_back":
            return "failed", f"board firmware: {done.reason}; it runs build {done.build} again"
        return "done", f"board build {done.build}"

"""The car unit's two install slots and the pointer between them (SPEC O-OTA-3).

Under the unit's install folder:

    slots/a/, slots/b/    each one version of the unit: an unpacked wheel and its VERSION
    current               a symlink to the slot that runs; replaced atomically (rename)
    trial.json            while a new slot is on trial: which, the one before, its deadline
    last_update.json      the outcome of the last update: healthy, or rolled back and why

The pointer is the truth: whatever a kill interrupts, the unit starts from a complete slot.
`install()` unpacks into `slots/<x>.partial` and renames it whole; `switch()` writes the trial
record first, then the pointer; `boot()` (each start, before the unit's code is loaded) takes a
slot on trial back to the one before if it started once already without confirming, or its
deadline passed; `confirm()` is the new version saying its self-check passed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.files import write_atomically

SLOTS = ("a", "b")
Step = Callable[[str], None]  # told each step's name before it is taken (the tests' kill points)


def _nothing(step: str) -> None:
    pass


class SlotError(Exception):
    """An install that cannot be made, naming why (the running slot is untouched)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict[str, Any], step: Step) -> None:
    body = json.dumps(data, sort_keys=True).encode()
    write_atomically(path, body, lambda: step(f"rename {path.name}"))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Booted:
    """What `boot()` decided: the slot to run, its version, and whether it is on trial."""

    slot: str
    version: str
    trial: bool
    rolled_back: str | None = None  # why the slot on trial was left, if it was


class Slots:
    """The install folder `root`; `clock` gives seconds (time is injected)."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root, self.clock = root, clock
        self.current, self.trial_file = root / "current", root / "trial.json"
        self.outcome_file = root / "last_update.json"

    def slot_dir(self, slot: str) -> Path:
        return self.root / "slots" / slot

    # ---- reading ---------------------------------------------------------------------------

    def running(self) -> str:
        """The slot the pointer names."""
        target = os.readlink(self.current)
        slot = Path(target).name
        if slot not in SLOTS:
            raise SlotError(f"{self.current} points at {target}, not a slot")
        return slot

    def version(self, slot: str) -> str:
        return (self.slot_dir(slot) / "VERSION").read_text().strip()

    def other(self, slot: str) -> str:
        return SLOTS[1 - SLOTS.index(slot)]

    def outcome(self) -> dict[str, Any] | None:
        return _read_json(self.outcome_file)

    def outcome_reported(self) -> None:
        """The unit has reported the last outcome to the cloud (its outbox holds it)."""
        done = self.outcome()
        if done is not None and not done.get("reported"):
            _write_json(self.outcome_file, {**done, "reported": True}, _nothing)

    # ---- installing ------------------------------------------------------------------------

    def first_install(self, wheel: Path, version: str) -> None:
        """A unit's first version, into slot a, the pointer made (provisioning)."""
        self._unpack(wheel, version, "a", _nothing)
        self._point("a", _nothing)

    def install(self, wheel: Path, version: str, step: Step = _nothing) -> str:
        """Unpack `wheel` (verified already) into the slot that is not running; that slot."""
        target = self.other(self.running())
        if self.trial_file.exists():
            raise SlotError("a version is on trial: it must be confirmed or rolled back first")
        self._unpack(wheel, version, target, step)
        return target

    def _unpack(self, wheel: Path, version: str, slot: str, step: Step) -> None:
        final, partial = self.slot_dir(slot), self.root / "slots" / f"{slot}.partial"
        final.parent.mkdir(parents=True, exist_ok=True)
        for leftover in (partial, final.with_name(f"{slot}.old")):
            shutil.rmtree(leftover, ignore_errors=True)
        step("unpack")
        try:
            with zipfile.ZipFile(wheel) as z:
                for member in z.infolist():
                    z.extract(member, partial)
                    step(f"extract {member.filename}")
        except zipfile.BadZipFile as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise SlotError(f"{wheel} is not a wheel: {exc}") from exc
        (partial / "VERSION").write_text(version + "\n")
        for path in sorted(partial.rglob("*")):
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        step("slot complete")
        if final.exists():
            os.replace(final, final.with_name(f"{slot}.old"))
            step("old slot aside")
        os.replace(partial, final)
        _fsync_dir(final.parent)
        step("slot in place")
        shutil.rmtree(final.with_name(f"{slot}.old"), ignore_errors=True)

    # ---- switching -------------------------------------------------------------------------

    def switch(self, slot: str, deadline_s: float, step: Step = _nothing) -> None:
        """Put `slot` on trial: the unit's next start runs it, and it must `confirm()` within
        `deadline_s` seconds of that start, or the one before comes back."""
        previous = self.running()
        if slot == previous or not (self.slot_dir(slot) / "VERSION").exists():
            raise SlotError(f"slot {slot} holds no new version to switch to")
        record = {"slot": slot, "previous": previous, "deadline_s": deadline_s,
                  "version": self.version(slot), "from_version": self.version(previous),
                  "starts": 0}  # fmt: skip
        _write_json(self.trial_file, record, step)
        step("trial recorded")
        self._point(slot, step)

    def _point(self, slot: str, step: Step) -> None:
        tmp = self.root / "current.new"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(Path("slots") / slot, tmp)
        step("pointer made")
        os.replace(tmp, self.current)
        _fsync_dir(self.root)
        step("pointer switched")

    # ---- starting --------------------------------------------------------------------------

    def boot(self, step: Step = _nothing) -> Booted:
        """Each start: the slot to run. A slot on trial that started before without confirming,
        or whose deadline passed, gives way to the one before it."""
        running = self.running()
        trial = _read_json(self.trial_file)
        if trial is None:
            self._drop(self.trial_file)
            return Booted(running, self.version(running), False)
        done = self.outcome()
        if trial["slot"] != running or (  # killed before the pointer moved, or after it moved
            done is not None  # back; or killed as it confirmed: the trial is over either way
            and done.get("result") == "healthy"
            and done.get("version") == trial["version"]
            and done.get("at", 0) >= trial.get("started_at", float("inf"))
        ):
            self._drop(self.trial_file)
            return Booted(running, self.version(running), False)
        now = self.clock()
        started = trial.get("started_at")
        reason = None
        if trial["starts"] >= 1:
            reason = "the new version stopped before its self-check passed"
        elif started is not None and now > started + trial["deadline_s"]:
            reason = "the new version did not pass its self-check in time"
        if reason is not None:
            return self.roll_back(reason, step)
        _write_json(self.trial_file, {**trial, "starts": trial["starts"] + 1,
                                      "started_at": now}, step)  # fmt: skip
        return Booted(running, self.version(running), True)

    def deadline(self) -> float | None:
        """When the slot on trial must have confirmed (None: none on trial)."""
        trial = _read_json(self.trial_file)
        if trial is None or trial.get("started_at") is None:
            return None
        return float(trial["started_at"]) + float(trial["deadline_s"])

    def confirm(self, step: Step = _nothing) -> None:
        """The new version's self-check passed: it stays."""
        trial = _read_json(self.trial_file)
        if trial is None:
            return
        _write_json(self.outcome_file, {"result": "healthy", "version": trial["version"],
                                        "from_version": trial["from_version"],
                                        "at": self.clock()}, step)  # fmt: skip
        self._drop(self.trial_file)

    def roll_back(self, reason: str, step: Step = _nothing) -> Booted:
        """Back to the version before the one on trial, saying why."""
        trial = _read_json(self.trial_file)
        if trial is None:
            running = self.running()
            return Booted(running, self.version(running), False)
        _write_json(self.outcome_file, {"result": "rolled_back", "reason": reason,
                                        "version": trial["version"],
                                        "from_version": trial["from_version"],
                                        "at": self.clock()}, step)  # fmt: skip
        self._point(trial["previous"], step)
        self._drop(self.trial_file)
        back = trial["previous"]
        return Booted(back, self.version(back), False, rolled_back=reason)

    def _drop(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)

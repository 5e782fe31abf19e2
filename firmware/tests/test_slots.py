"""A/B install slots and the launcher (SPEC O-OTA-3), with real processes: a new version that
passes its self-check stays; one that stops before, or misses its deadline, is replaced by the
one before, which runs again, and the car says why. SIGKILL at every step of an install, a
switch, a start and a confirmation leaves a complete version that starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from firmware.launcher import Launcher
from firmware.slots import SlotError, Slots
from firmware.tests.probe_unit import wheel

ROOT = Path(__file__).resolve().parents[2]


def complete(slots: Slots, slot: str, source: Path) -> bool:
    """Every file of the wheel in the slot, byte for byte."""
    with zipfile.ZipFile(source) as z:
        return all((slots.slot_dir(slot) / m).read_bytes() == z.read(m) for m in z.namelist())


def launcher(slots: Slots) -> Launcher:
    return Launcher(slots, [sys.executable, "-m", "kagi_probe"], poll=0.02)


def ran(tmp: Path) -> list[str]:
    return (tmp / "ran").read_text().split()


def test_a_new_version_that_passes_its_self_check_stays(unit: Slots, tmp_path: Path) -> None:
    slot = unit.install(wheel(tmp_path, "0.2.0"), "0.2.0")
    assert slot == "b" and unit.running() == "a", "installed beside, nothing replaced"
    unit.switch(slot, deadline_s=30)
    first = launcher(unit).run_once()
    assert (first.booted.version, first.booted.trial, first.exit_code) == ("0.2.0", True, 0)
    assert unit.outcome() is not None and unit.outcome()["result"] == "healthy"  # type: ignore[index]
    again = launcher(unit).run_once()
    assert (again.booted.version, again.booted.trial) == ("0.2.0", False)
    assert ran(tmp_path) == ["0.2.0", "0.2.0"]


def test_a_new_version_that_stops_before_its_self_check_is_rolled_back(
    unit: Slots, tmp_path: Path
) -> None:
    unit.switch(unit.install(wheel(tmp_path, "0.2.0", "crash"), "0.2.0"), deadline_s=30)
    crashed = launcher(unit).run_once()
    assert (crashed.booted.version, crashed.exit_code) == ("0.2.0", 3)
    back = launcher(unit).run_once()
    assert back.booted.version == "0.1.0" and back.exit_code == 0
    assert back.rolled_back == "the new version stopped before its self-check passed"
    outcome = unit.outcome()
    assert outcome is not None
    assert (outcome["result"], outcome["version"], outcome["from_version"]) == (
        "rolled_back", "0.2.0", "0.1.0",
    )  # fmt: skip
    assert ran(tmp_path) == ["0.2.0", "0.1.0"]
    assert unit.running() == "a"


def test_a_new_version_that_hangs_past_its_deadline_is_killed_and_rolled_back(
    unit: Slots, tmp_path: Path
) -> None:
    unit.switch(unit.install(wheel(tmp_path, "0.2.0", "hang"), "0.2.0"), deadline_s=1.0)
    started = time.monotonic()
    hung = launcher(unit).run_once()
    assert hung.exit_code is None, "killed by the launcher"
    assert time.monotonic() - started < 10
    assert hung.rolled_back == "the new version did not pass its self-check in time"
    assert launcher(unit).run_once().booted.version == "0.1.0"


def test_an_update_waits_for_the_trial_to_end_and_refuses_a_broken_wheel(
    unit: Slots, tmp_path: Path
) -> None:
    unit.switch(unit.install(wheel(tmp_path, "0.2.0"), "0.2.0"), deadline_s=30)
    with pytest.raises(SlotError, match="on trial"):
        unit.install(wheel(tmp_path, "0.3.0"), "0.3.0")
    launcher(unit).run_once()
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(SlotError, match="is not a wheel"):
        unit.install(broken, "0.3.0")
    assert unit.version(unit.running()) == "0.2.0"


KILLED = """
import os, signal, sys
from pathlib import Path
from firmware.slots import Slots
n, count = int(sys.argv[2]), 0
def step(name):
    global count
    count += 1
    if count == n:
        os.kill(os.getpid(), signal.SIGKILL)
slots = Slots(Path(sys.argv[1]))
slot = slots.install(Path(sys.argv[3]), "0.2.0", step)
slots.switch(slot, 30, step)
slots.boot(step)
slots.confirm(step)
print(count)
"""


def killed_at(unit: Slots, new: Path, n: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", KILLED, str(unit.root), str(n), str(new)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_sigkill_at_every_step_leaves_a_complete_version_that_starts(tmp_path: Path) -> None:
    """O-OTA-3: killed at each of the steps (≥ 30) of install, switch, start and confirm, the
    next start runs a complete version, old or new; and the car can still take the update."""
    old, new = wheel(tmp_path, "0.1.0"), wheel(tmp_path, "0.2.0")

    def fresh(name: str) -> Slots:
        slots = Slots(tmp_path / name)
        slots.first_install(old, "0.1.0")
        return slots

    whole = killed_at(fresh("count"), new, 0)
    assert whole.returncode == 0, whole.stderr
    steps = int(whole.stdout)
    assert steps >= 30
    seen = set()
    for n in range(1, steps + 1):
        unit = fresh(f"kill-{n}")
        done = killed_at(unit, new, n)
        assert done.returncode == -signal.SIGKILL, (n, done.stderr)
        booted = unit.boot()
        source = old if booted.version == "0.1.0" else new
        assert booted.version in ("0.1.0", "0.2.0")
        assert complete(unit, booted.slot, source), f"killed at step {n}: slot incomplete"
        seen.add(booted.version)
        if booted.trial:
            unit.confirm()
        if unit.version(unit.running()) == "0.1.0":  # the update can still be taken
            unit.switch(unit.install(new, "0.2.0"), 30)
            assert unit.boot().version == "0.2.0"
            unit.confirm()
        assert unit.version(unit.running()) == "0.2.0"
        assert not (unit.root / "trial.json").exists()
    assert seen == {"0.1.0", "0.2.0"}


def test_the_outcome_is_kept_as_data(unit: Slots, tmp_path: Path) -> None:
    unit.switch(unit.install(wheel(tmp_path, "0.2.0", "crash"), "0.2.0"), deadline_s=30)
    launcher(unit).run_once()
    launcher(unit).run_once()
    saved = json.loads((unit.root / "last_update.json").read_text())
    assert saved["result"] == "rolled_back" and "reason" in saved
    assert os.readlink(unit.current) == "slots/a"

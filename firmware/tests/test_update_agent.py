"""The car takes an offered update step by step (SPEC O-OTA-2, O-OTA-3), against a real cloud
repository over HTTP: offered during a trip, it downloads and verifies at once but installs
only when the car is idle; then the launcher holds the new version to its self-check. A tampered
release is refused and the running version stays; every step is reported."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from firmware.launcher import Launcher
from firmware.slots import Slots
from firmware.tests.probe_unit import wheel
from firmware.tests.test_update_fetch import Cloud, cloud  # noqa: F401 - the fixture
from firmware.update_agent import UpdateAgent
from tools import release

ROOT = Path(__file__).resolve().parents[2]


def publish(c: Cloud, tmp: Path, version: str, behaviour: str = "healthy") -> None:
    parts = release.parts(wheel(tmp, version, behaviour), {"pico": {"main.py": b"pass\n"}})
    targets, files = release.sign(c.keys, version, parts, c.repo.current_targets())
    c.repo.publish(targets, files)


class Car:
    """What the agent asks of the unit: its gate, a restart; what it reports."""

    def __init__(self) -> None:
        self.busy: str | None = None
        self.restarts = 0
        self.steps: list[tuple[str, dict[str, Any]]] = []

    def report(self, step: str, **details: Any) -> None:
        self.steps.append((step, details))

    def names(self) -> list[str]:
        return [s for s, _ in self.steps]


def agent(c: Cloud, slots: Slots, car: Car, tmp: Path) -> UpdateAgent:
    def restart() -> None:
        car.restarts += 1

    return UpdateAgent(slots, c.url, c.root, tmp / "car-tuf", lambda: car.busy, restart,
                       car.report, deadline_s=30)  # fmt: skip


def test_an_update_offered_during_a_trip_waits_until_the_car_is_idle(
    cloud: Cloud,  # noqa: F811
    unit: Slots,
    tmp_path: Path,
) -> None:
    publish(cloud, tmp_path, "0.2.0")
    car = Car()
    car.busy = "the car is not idle (in_use)"
    updates = agent(cloud, unit, car, tmp_path)
    updates.offer("0.2.0")
    assert updates.step() == "waiting"
    assert updates.step() == "waiting"  # reported once
    assert car.names() == ["offered", "downloading", "downloaded", "waiting"]
    assert car.steps[-1][1]["reason"] == "the car is not idle (in_use)"
    wheel_size = len(wheel(tmp_path, "0.2.0").read_bytes())
    assert car.steps[2][1]["bytes"] > wheel_size, "the wheel, the board files and the metadata"
    assert unit.running() == "a" and not (unit.root / "trial.json").exists()
    assert car.restarts == 0

    car.busy = None  # the trip ended, the forgotten-item window closed
    assert updates.step() == "installed"
    assert car.restarts == 1
    launched = Launcher(unit, [sys.executable, "-m", "kagi_probe"], poll=0.02).run_once()
    assert (launched.booted.version, launched.booted.trial, launched.exit_code) == (
        "0.2.0", True, 0,
    )  # fmt: skip
    assert updates.outcome() is not None and updates.outcome()["result"] == "healthy"  # type: ignore[index]
    assert updates.running_version() == "0.2.0"
    assert updates.report_outcome() == "healthy"  # the new version says how it went, once
    assert car.steps[-1] == ("healthy", {"version": "0.2.0", "from_version": "0.1.0",
                                         "running": "0.2.0"})  # fmt: skip
    assert updates.report_outcome() is None
    updates.offer("0.2.0")
    assert car.names()[-1] == "healthy"


def test_a_tampered_release_is_refused_and_nothing_changes(
    cloud: Cloud,  # noqa: F811
    unit: Slots,
    tmp_path: Path,
) -> None:
    publish(cloud, tmp_path, "0.2.0")
    for f in (cloud.repo.targets_dir / "releases/0.2.0/unit").iterdir():
        f.write_bytes(f.read_bytes()[:-1] + b"!")
    car = Car()
    updates = agent(cloud, unit, car, tmp_path)
    updates.offer("0.2.0")
    assert updates.step() == "refused"
    step, details = car.steps[-1]
    assert (step, details["reason"]) == ("refused", "tampered")
    assert updates.step() is None, "not tried again until offered again"
    assert unit.running() == "a" and unit.version("a") == "0.1.0"
    assert car.restarts == 0


def test_healthy_waits_for_the_board_and_a_board_that_went_back_fails_the_update(
    cloud: Cloud,  # noqa: F811
    unit: Slots,
    tmp_path: Path,
) -> None:
    # SPEC O-OTA-3: the car is healthy on a release only once its board runs the release's too
    publish(cloud, tmp_path, "0.2.0")
    car = Car()
    updates = agent(cloud, unit, car, tmp_path)
    answers = [
        ("waiting", "the car is not idle (in_use)"),
        ("failed", "board firmware: the board did not say hello; it runs build a1 again"),
    ]
    updates.board = lambda version: answers.pop(0)  # fmt: skip
    updates.offer("0.2.0")
    assert updates.step() == "installed"
    Launcher(unit, [sys.executable, "-m", "kagi_probe"], poll=0.02).run_once()
    assert updates.report_outcome() == "waiting"
    assert car.steps[-1] == ("waiting", {"version": "0.2.0",
                                         "reason": "the car is not idle (in_use)"})  # fmt: skip
    assert updates.report_outcome() == "failed"
    step, details = car.steps[-1]
    assert step == "failed" and answers == []
    assert "it runs build a1 again" in details["reason"]
    assert updates.report_outcome() is None, "reported once"

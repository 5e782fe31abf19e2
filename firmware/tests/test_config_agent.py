"""A fleet configuration reaches the car (SPEC O-OTA-4), against a real cloud repository over
HTTP: signed offline like a release, checked with the same TUF checks, applied only between
trips, kept across a restart, and the car runs with it (a longer door timer holds off the
security lock). A tampered file, an older configuration and one this car cannot use are refused,
naming why, and the car keeps what it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from firmware.config import FLEET_FILE, TripConfig, load_unit_config
from firmware.config_agent import ConfigAgent, apply_between_trips
from firmware.tests.harness import MIN, START, Car
from firmware.tests.test_update_fetch import Cloud, cloud  # noqa: F401 - the fixture
from firmware.tests.unit_process import write_config
from tools import release


def publish(c: Cloud, version: int, tables: dict[str, Any]) -> None:
    body = json.dumps({"version": version, **tables}).encode()
    targets, files = release.sign_config(c.keys, version, body, c.repo.current_targets())
    c.repo.publish(targets, files)


class Steps:
    def __init__(self) -> None:
        self.said: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, step: str, **details: Any) -> None:
        self.said.append((step, details))

    def last(self) -> tuple[str, dict[str, Any]]:
        return self.said[-1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_config(tmp_path / "car")
    return tmp_path / "car"


def agent(c: Cloud, car: Car, folder: Path, steps: Steps) -> ConfigAgent:
    unit = load_unit_config(folder / "unit.toml")
    return ConfigAgent(
        unit, c.url, c.root, folder / "updates",
        lambda v, body, trip: apply_between_trips(car.runner, folder, v, body, trip), steps,
        running=unit.fleet_config_version,
    )  # fmt: skip


def test_a_fleet_configuration_is_applied_between_trips_and_kept(
    cloud: Cloud,  # noqa: F811
    folder: Path,
) -> None:
    # SPEC O-OTA-4
    assert TripConfig().timing.door_timer == 60
    publish(cloud, 1, {"timing": {"door_timer": "3m"}, "end_checks": {"lights": "block"}})
    car, steps = Car(t=START - 60 * MIN), Steps()
    configs = agent(cloud, car, folder, steps)
    configs.offer(1)
    assert configs.step() == "applied"
    assert [s for s, _ in steps.said] == ["offered", "applied"]
    assert steps.last()[1]["bytes"] > 0
    assert car.runner.config.timing.door_timer == 180
    assert car.runner.config.end_checks.lights == "block"

    car.start_by_card()  # with 3 minutes before the door timer locks the car
    car.advance(2 * MIN)
    assert car.state == "unlocked", "the fleet's door timer, not the default 1 minute"
    car.advance(1 * MIN + 1)
    assert car.reports("security_locked")

    # a restart keeps it: the unit reads it back beside its file
    kept = load_unit_config(folder / "unit.toml")
    assert kept.fleet_config_version == 1 and kept.trip.timing.door_timer == 180
    assert kept.trip.end_checks.geofence == "warn", "what it does not set stays the car's"


def test_during_a_trip_it_waits_for_the_trip_to_end(
    cloud: Cloud,  # noqa: F811
    folder: Path,
) -> None:
    publish(cloud, 1, {"timing": {"forgotten_window": "15m"}})
    car, steps = Car(), Steps()
    car.drive_off()
    configs = agent(cloud, car, folder, steps)
    configs.offer(1)
    assert configs.step() == "waiting"
    assert configs.step() == "waiting"
    assert steps.said == [
        ("offered", {"version": 1}),
        ("waiting", {"version": 1, "reason": "the car is not idle (in_use)"}),
    ], "reported once while it waits"
    assert car.runner.config.timing.forgotten_window == 600
    assert not (folder / FLEET_FILE).exists()


def test_tampered_older_and_unusable_configurations_are_refused(
    cloud: Cloud,  # noqa: F811
    folder: Path,
) -> None:
    car, steps = Car(t=START - 60 * MIN), Steps()
    publish(cloud, 1, {"timing": {"door_timer": "2m"}})
    configs = agent(cloud, car, folder, steps)
    configs.offer(1)
    assert configs.step() == "applied"

    publish(cloud, 2, {"timing": {"door_timer": "90s"}})
    (cloud.repo.targets_dir / "config/2.json").write_bytes(b'{"version": 2, "timing": {}}')
    configs.offer(2)
    assert configs.step() == "refused"
    assert (steps.last()[0], steps.last()[1]["reason"]) == ("refused", "tampered")

    configs.offer(1)  # what it runs already
    assert steps.last() == ("applied", {"version": 1})
    configs.running = 3
    configs.offer(2)
    assert configs.step() == "refused" and steps.last()[1]["reason"] == "older"
    configs.running = 1

    # signed, but with a switch this car does not know (a newer kagi's): refused, naming it
    publish(cloud, 3, {"timing": {"door_timer": "2m", "kettle": "on"}})
    configs.offer(3)
    assert configs.step() == "refused"
    step, details = steps.last()
    assert step == "refused"
    assert (details["reason"], details["detail"]) == ("invalid", "timing.kettle: unknown key")
    assert car.runner.config.timing.door_timer == 120, "it keeps what it runs"
    assert json.loads((folder / FLEET_FILE).read_text())["version"] == 1

"""A rollout to a fleet of real car units (SPEC O-OTA-1, O-OTA-2, O-OTA-3): the operator
publishes a release and starts a rollout with `kagi`; the cloud offers it to two canaries,
then to the rest once both are healthy; each car downloads it over HTTP, checks it with python
-tuf, installs it beside the running version, restarts into it under `kagi unit launch`, passes
its start-up check and reports healthy, and the cloud sees the car's new version. A car that was
off during the rollout takes it when it is back. A release whose new version fails its check is
rolled back by the canary by itself, and the rollout stops there: no other car is offered it."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tools.release_cli import build_wheel
from tools.rig.releases import NEVER_HEALTHY
from tools.rig.update_fleet import UpdateFleet
from tools.rig.wait import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_canaries_then_the_rest_and_a_car_that_was_off_catches_up(
    tmp_path: Path, wheel: Path
) -> None:
    # SPEC O-OTA-1, O-OTA-2, O-OTA-3
    with UpdateFleet(tmp_path, 4, wheel) as fleet:
        try:
            assert {fleet.firmware(c) for c in fleet.car_ids} == {"0.1.0"}
            off = fleet.units["car-004"]
            off.close()  # the car is switched off during the rollout
            fleet.publish("0.2.0")
            shown = fleet.kagi("cloud", "rollout", "start", "0.2.0", "--all", "--canaries", "2",
                               *fleet.repo_args)  # fmt: skip
            assert "canaries first: car-001, car-002" in shown

            fleet.wait_rollout(lambda r: r["stage"] == "rest", "both canaries healthy")
            steps = fleet.steps()
            assert (steps["car-001"], steps["car-002"]) == ("healthy", "healthy")
            assert steps["car-004"] == "pending", "a car that is off is not offered"
            for car in ("car-001", "car-002"):
                assert fleet.firmware(car) == "0.2.0"
            fleet.wait_rollout(lambda r: r["counts"].get("healthy") == 3, "car-003 to take it")
            assert fleet.rollout()["status"] == "running", "car-004 has not had it yet"

            off.spawn()  # back on: it is offered the version and takes it
            done = fleet.wait_rollout(lambda r: r["status"] == "done", "the rollout to finish")
            assert done["counts"] == {"healthy": 4}
            assert done["reason"] == "0 of 4 cars did not take it"
            for car in fleet.car_ids:
                assert fleet.firmware(car) == "0.2.0"
                status = fleet.units[car].status_now()
                assert status["state"] == "idle" and status["cloud"]["connected"] is True
                outcome = (tmp_path / car / "install" / "last_update.json").read_text()
                assert '"result": "healthy"' in outcome and '"from_version": "0.1.0"' in outcome
            # every car reported its steps in order: offered, downloading, …, installed, healthy
            log = fleet.units["car-003"].log_path.read_text()
            assert "updates: 0.2.0 installed" in log and "this version stays" in log
        except BaseException:
            print(fleet.logs())
            raise


def test_a_canary_whose_new_version_fails_rolls_back_and_stops_the_rollout(
    tmp_path: Path, wheel: Path
) -> None:
    """…and a fleet configuration still reaches every car (O-OTA-4), which reports it."""
    # SPEC O-OTA-3, O-OTA-4
    with UpdateFleet(tmp_path, 2, wheel, deadline="8s") as fleet:
        try:
            fleet.publish("0.2.0", NEVER_HEALTHY)
            fleet.kagi("cloud", "rollout", "start", "0.2.0", "--all", "--canary", "car-001",
                       *fleet.repo_args)  # fmt: skip
            stopped = fleet.wait_rollout(lambda r: r["status"] == "stopped", "the rollout to stop")
            assert stopped["reason"] == (
                "canary car-001 rolled back: the new version did not pass its self-check in time"
            )
            assert fleet.steps() == {"car-001": "rolled_back", "car-002": "pending"}
            assert fleet.firmware("car-001") == "0.1.0", "the version before runs again"
            assert fleet.firmware("car-002") == "0.1.0"
            status = fleet.units["car-001"].status_now()
            assert status["state"] == "idle" and status["cloud"]["connected"] is True

            fleet.kit.publish_config(1, '[timing]\ndoor_timer = "2m"\n')
            fleet.kagi("cloud", "rollout", "config", "1", *fleet.repo_args)

            def runs_config(car: str) -> bool:
                return (fleet.car_status(car)[1] or {}).get("config") == 1

            for car in fleet.car_ids:
                wait_for(partial(runs_config, car), f"{car} to run configuration 1", timeout=60)
                log = fleet.units[car].log_path.read_text()
                assert "fleet configuration 1 applied" in log
                assert '"door_timer": "2m"' in (tmp_path / car / "fleet-config.json").read_text()
        except BaseException:
            print(fleet.logs())
            raise

"""Rollouts on SQLite and PostgreSQL (SPEC O-OTA-1, O-OTA-2, O-OTA-3): the canaries are offered
first, the rest once every canary reports healthy; a failing canary stops the rollout by
itself; pause, resume and abort; a car offline is offered when it is back, and again after a
while if it said nothing; the cars' steps arrive as their `update_step` events, once and in
order. The cars here are a recording port: the whole path over MQTT is in hil_tests."""

# ruff: noqa: F811 (the fixtures imported from test_sync_support are parameters here)
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cloud import rollouts
from cloud.rollouts import RolloutDriver
from cloud.service import Refused
from cloud.store import Conflict, InvalidValue, NotFound, Store
from cloud.tests.test_sync_events import ev, ingest
from cloud.tests.test_sync_support import fleet  # noqa: F401 (fixture)

CARS = ["car-1", "car-2", "car-3", "car-4"]
V = "0.2.0"


class Cars:
    """The cars as the driver reaches them: which got an `update`, which are away."""

    def __init__(self) -> None:
        self.offered: list[tuple[str, dict[str, Any]]] = []
        self.away: set[str] = set()
        self.takes_no_updates: set[str] = set()

    def send(self, car_id: str, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert name in ("update", "configure")
        if car_id in self.away:
            raise Refused(503, "car_offline", f"car {car_id} is offline")
        self.offered.append((car_id, args))
        if car_id in self.takes_no_updates:
            return {"command_id": "x", "ok": False, "code": "updates_off", "data": {}}
        return {"command_id": "x", "ok": True, "code": "update_offered", "data": {}}

    def take(self) -> list[str]:
        got, self.offered = sorted(c for c, _ in self.offered), []
        return got


class Fleet:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.seq: dict[str, int] = {}
        for car in CARS[2:]:
            store.add_car(car, station_id="st-1", name=f"Fit {car[-1]}")
        for car in CARS:
            store.set_car_online(car, True, store._now().timestamp())

    def says(self, car: str, step: str, reason: str = "", version: str = V) -> str:
        self.seq[car] = self.seq.get(car, 0) + 1
        data = {"step": step, "version": version, "at": 0.0, "state": "idle"}
        if reason:
            data["reason"] = reason
        event = ev(self.seq[car], "update_step", data, self.store._now())
        [outcome] = ingest(self.store, car, event)
        return outcome


@pytest.fixture
def cars() -> Cars:
    return Cars()


@pytest.fixture
def world(fleet: Store) -> Fleet:
    return Fleet(fleet)


def steps(store: Store, rollout_id: int) -> dict[str, str]:
    return {c.car_id: c.step for c in store.get_rollout(rollout_id).cars}


def test_canaries_first_then_the_rest_once_every_canary_is_healthy(
    world: Fleet, cars: Cars
) -> None:
    # SPEC O-OTA-1
    store = world.store
    r = rollouts.start(store, ["0.1.0", V], V, CARS, 2, "ops")
    assert (r.status, r.stage) == ("running", "canary")
    assert [c.car_id for c in r.cars if c.canary] == ["car-1", "car-2"]
    driver = RolloutDriver(store, cars)
    assert driver.offer_due() == 2
    assert cars.take() == ["car-1", "car-2"] and cars.offered == []
    assert cars.offered == [] and driver.offer_due() == 0  # offered already: not again so soon
    assert steps(store, r.rollout_id) == {"car-1": "offered", "car-2": "offered",
                                          "car-3": "pending", "car-4": "pending"}  # fmt: skip

    for step in ("offered", "downloading", "downloaded", "installed"):
        assert world.says("car-1", step) == f"applied: rollout {r.rollout_id} car {step}"
    assert world.says("car-1", "healthy") == f"applied: rollout {r.rollout_id} car healthy"
    assert driver.offer_due() == 0, "the rest wait for every canary"
    assert world.says("car-2", "healthy").endswith("every canary healthy: on to the rest")
    assert store.get_rollout(r.rollout_id).stage == "rest"
    assert driver.offer_due() == 2 and cars.take() == ["car-3", "car-4"]

    world.says("car-3", "healthy")
    assert world.says("car-4", "refused", "older").endswith("rollout done")
    done = store.get_rollout(r.rollout_id)
    assert (done.status, done.reason) == ("done", "1 of 4 cars did not take it")
    assert done.counts() == {"healthy": 3, "refused": 1}
    assert done.car("car-4").reason == "older"
    assert store.active_rollout() is None


def test_a_failing_canary_stops_the_rollout_by_itself(world: Fleet, cars: Cars) -> None:
    # SPEC O-OTA-3
    store = world.store
    r = rollouts.start(store, [V], V, CARS, ["car-2"], "ops")
    driver = RolloutDriver(store, cars)
    driver.offer_due()
    assert cars.take() == ["car-2"]
    outcome = world.says("car-2", "rolled_back", "the new version did not pass its self-check")
    assert outcome.endswith("rollout stopped (canary car-2 rolled back: the new version did "
                            "not pass its self-check)")  # fmt: skip
    stopped = store.get_rollout(r.rollout_id)
    assert (stopped.status, stopped.stage) == ("stopped", "canary")
    assert driver.offer_due() == 0 and cars.take() == []
    with pytest.raises(Conflict, match="stopped: it cannot resume"):
        store.act_on_rollout(r.rollout_id, "resume")
    # a fixed release goes out as a new rollout
    again = rollouts.start(store, [V, "0.2.1"], "0.2.1", CARS, 1, "ops")
    assert again.rollout_id != r.rollout_id and again.status == "running"


def test_pause_resume_and_abort_and_only_one_rollout_at_a_time(world: Fleet, cars: Cars) -> None:
    store = world.store
    r = rollouts.start(store, [V], V, CARS, 0, "ops")
    assert r.stage == "rest", "no canaries: every car at once"
    with pytest.raises(Conflict, match=f"rollout {r.rollout_id} of {V} is still going"):
        rollouts.start(store, [V], V, CARS, 0, "ops")
    assert store.act_on_rollout(r.rollout_id, "pause").status == "paused"
    driver = RolloutDriver(store, cars)
    assert driver.offer_due() == 0
    with pytest.raises(Conflict, match="paused: it cannot pause"):
        store.act_on_rollout(r.rollout_id, "pause")
    assert store.act_on_rollout(r.rollout_id, "resume").status == "running"
    assert driver.offer_due() == 4
    aborted = store.act_on_rollout(r.rollout_id, "abort")
    assert (aborted.status, aborted.reason) == ("aborted", "aborted by the operator")
    world.says("car-1", "healthy")  # a car that had it already keeps it, and says so
    assert store.get_rollout(r.rollout_id).car("car-1").step == "healthy"
    assert store.get_rollout(r.rollout_id).status == "aborted"
    with pytest.raises(InvalidValue, match="expected one of"):
        store.act_on_rollout(r.rollout_id, "rewind")


def test_a_car_offline_is_offered_when_it_is_back_and_again_if_it_said_nothing(
    world: Fleet, cars: Cars, clock: Any
) -> None:
    # SPEC O-OTA-2
    store = world.store
    store.set_car_online("car-3", False, clock().timestamp() + 1)
    cars.away.add("car-4")  # the store thinks it is online, but it does not answer
    r = rollouts.start(store, [V], V, CARS, 0, "ops")
    driver = RolloutDriver(store, cars, reoffer_after=dt.timedelta(minutes=10))
    assert driver.offer_due() == 2 and cars.take() == ["car-1", "car-2"]
    assert steps(store, r.rollout_id)["car-4"] == "pending"
    world.says("car-1", "downloading")
    clock.advance(minutes=11)
    store.set_car_online("car-3", True, clock().timestamp())
    cars.away.clear()
    # car-3 is back and car-4 answers now; car-1 and car-2, not done 10 minutes after their
    # offer, are offered again (a unit that restarted has forgotten it; a second is harmless)
    assert driver.offer_due() == 4
    assert cars.take() == CARS
    world.says("car-1", "healthy")
    clock.advance(minutes=11)
    driver.offer_due()
    assert "car-1" not in cars.take(), "a car done with the version is never offered again"


def test_a_unit_that_takes_no_updates_is_marked_refused(world: Fleet, cars: Cars) -> None:
    store = world.store
    cars.takes_no_updates.add("car-1")
    r = rollouts.start(store, [V], V, CARS, 1, "ops")
    RolloutDriver(store, cars).offer_due()
    stopped = store.get_rollout(r.rollout_id)
    assert stopped.car("car-1").step == "refused"
    assert stopped.status == "stopped"
    assert "the car refused the offer (updates_off)" in stopped.reason


def test_bad_rollouts_are_refused_naming_what_was_wrong(world: Fleet) -> None:
    store = world.store
    with pytest.raises(InvalidValue, match=r"9\.9\.9 is not published \(published: 0\.2\.0"):
        rollouts.start(store, [V], "9.9.9", CARS, 1, "ops")
    with pytest.raises(NotFound, match="car-99"):
        rollouts.start(store, [V], V, ["car-1", "car-99"], 1, "ops")
    with pytest.raises(InvalidValue, match="not among the rollout's cars: car-9"):
        rollouts.start(store, [V], V, CARS, ["car-9"], "ops")
    with pytest.raises(InvalidValue, match="leave at least one car"):
        rollouts.start(store, [V], V, CARS[:2], 2, "ops")
    with pytest.raises(InvalidValue, match="at least one car"):
        rollouts.start(store, [V], V, [], 0, "ops")
    assert store.list_rollouts() == []


def test_steps_of_a_version_no_rollout_sent_and_late_steps_are_kept_not_applied(
    world: Fleet,
) -> None:
    store = world.store
    assert world.says("car-1", "healthy", version="0.3.0") == (
        "kept: car car-1 is in no rollout of 0.3.0"
    )
    r = rollouts.start(store, [V], V, CARS, 0, "ops")
    world.says("car-1", "healthy")
    assert world.says("car-1", "downloading").startswith("kept: car car-1 finished rollout")
    assert store.get_rollout(r.rollout_id).car("car-1").step == "healthy"


def test_a_fleet_configuration_is_offered_to_each_online_car_until_it_runs_it(
    world: Fleet, cars: Cars, clock: Any
) -> None:
    # SPEC O-OTA-4
    store = world.store
    driver = RolloutDriver(store, cars, reoffer_after=dt.timedelta(0))
    assert driver.offer_config_due() == 0, "no fleet configuration pushed: nothing offered"
    with pytest.raises(InvalidValue, match=r"configuration 2 is not published \(published: 1\)"):
        rollouts.push_config(store, [1], 2)
    rollouts.push_config(store, [1], 1)
    for n, car in enumerate(CARS):
        store.set_car_state(car, clock().timestamp() + n, {"config": 1 if car == "car-2" else 0})
    store.set_car_online("car-3", False, clock().timestamp() + 10)
    assert driver.offer_config_due() == 2
    offered = sorted(cars.offered, key=lambda o: o[0])
    assert offered == [("car-1", {"version": 1}), ("car-4", {"version": 1})]
    assert cars.take() == ["car-1", "car-4"], "car-2 runs it, car-3 is away"
    store.set_car_state("car-1", clock().timestamp() + 20, {"config": 1})
    assert driver.offer_config_due() == 1 and cars.take() == ["car-4"]
    rollouts.push_config(store, [1, 2], 2)
    with pytest.raises(InvalidValue, match="configuration 1 is older than 2, sent already"):
        rollouts.push_config(store, [1, 2], 1)

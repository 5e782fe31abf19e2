"""The operator's commands in the car (SPEC O-CAR-1, O-ROLE-1, X-SAFE-1, X-SAFE-2, S-SYNC-3)."""

from __future__ import annotations

import pytest

from firmware.effects import Immobiliser, Lock, Unlock
from firmware.tests.harness import ALICE, MIN, START, Car
from protocol import messages


def test_immobilise_is_refused_while_the_engine_runs_and_accepted_once_it_stops():
    # SPEC O-CAR-1, X-SAFE-1
    car = Car()
    car.drive_off()
    result = car.command("immobilise")
    assert (result.ok, result.code) == (False, "engine_running")
    assert car.immobilised is False and Immobiliser(True) not in car.effects
    assert car.command("release").code == "engine_running"
    car.engine(False)
    result = car.command("immobilise")
    assert (result.ok, result.code) == (True, "immobilised")
    assert car.immobilised is True
    # the trip goes on (the driver is not locked out), but the engine cannot start
    assert car.state == "in_use" and car.doors == "unlocked"
    assert car.reports("operator_immobilised")
    result = car.command("release")
    assert (result.ok, result.code) == (True, "released")
    assert car.immobilised is False  # in_use with the key out: U-SEC-5 releases it again


def test_immobilised_survives_a_restart_and_is_reported_in_the_state():
    # SPEC O-CAR-1, U-DATA-1, S-SYNC-4
    car = Car()
    assert car.command("immobilise").ok
    car = car.restart()
    core = car.runner.core
    assert core is not None and core.data.operator.immobilised
    assert car.immobilised is True
    from firmware.cloud_link import state_fields

    fields = state_fields(core.snapshot(), 1, "test")
    assert (fields["operator_immobilised"], fields["immobilised"]) == (True, True)


def test_an_immobilised_car_starts_no_trip_until_released():
    # SPEC O-CAR-1: a start would unlock a car that cannot be driven
    car = Car()
    car.command("immobilise")
    car.at(START)
    car.tap(ALICE)
    assert car.state == "idle" and car.doors == "locked"
    assert car.reports("card_denied")[-1]["reason"] == "immobilised"
    assert car.command("start", reservation_id="r1").code == "immobilised"
    car.command("release")
    assert car.immobilised is True  # idle: the state keeps it immobilised (U-END-5)
    assert car.command("start", reservation_id="r1").code == "started"


def test_lock_during_a_trip_before_the_key_is_taken_is_a_security_lock_the_driver_undoes():
    # SPEC O-CAR-1, U-SEC-4: never lock a driver in with no way out
    car = Car()
    car.start_by_card()
    result = car.command("lock")
    assert (result.ok, result.code) == (True, "locked")
    assert (car.state, car.doors) == ("security_locked", "locked")
    assert car.reports("security_locked")[-1]["reason"] == "operator"
    car.tap(ALICE)  # the driver's card re-unlocks, as the guide says
    assert (car.state, car.doors) == ("unlocked", "unlocked")


def test_lock_with_the_key_out_locks_the_doors_and_the_trip_goes_on():
    # SPEC O-CAR-1, U-USE-1 (the driver's key opens the car), U-SEC-4
    car = Car()
    car.drive_off()
    assert car.command("lock").code == "engine_running"  # X-SAFE-1
    assert Lock() not in car.effects
    car.engine(False)
    result = car.command("lock")
    assert (result.ok, result.code, car.doors, car.state) == (True, "locked", "locked", "in_use")
    assert car.immobilised is False
    assert car.command("reunlock").code == "unlocked"
    assert car.doors == "unlocked"


def test_lock_refuses_an_open_door_naming_it():
    # SPEC O-CAR-1
    car = Car()
    car.open_door("tailgate")
    result = car.command("lock")
    assert (result.ok, result.code, result.data["doors"]) == (False, "doors_open", ["tailgate"])


def test_unlock_only_an_idle_car_and_lock_again():
    # SPEC O-CAR-1, X-SAFE-2 (a valid remote command)
    car = Car()
    result = car.command("unlock")
    assert (result.ok, result.code, car.doors) == (True, "unlocked", "unlocked")
    assert car.immobilised is True  # a cleaner opens the doors, not the engine
    car = car.restart()
    assert car.doors == "unlocked"  # it survives a restart like every state
    assert car.command("lock").code == "locked" and car.doors == "locked"
    assert [r["type"] for r in car.reports() if r["type"].startswith("operator_")] == [
        "operator_unlocked",
        "operator_locked",
    ]
    car.start_by_card()
    result = car.command("unlock")
    assert (result.ok, result.code, result.data["state"]) == (False, "car_busy", "unlocked")


def test_a_start_ends_the_operators_unlock():
    # SPEC O-CAR-1, U-SEC-1: after the trip the car locks as ever
    car = Car()
    car.command("unlock")
    car.start_by_card()
    car.advance(10 * MIN)  # U-SEC-1: no door opened
    assert (car.state, car.doors) == ("security_locked", "locked")


def test_operator_end_ends_and_locks_whatever_the_checks_say():
    # SPEC O-CAR-1 (key lost), U-END-3, U-END-5, X-SAFE-1
    car = Car()
    car.drive_off()
    assert car.command("operator_end").code == "engine_running"
    assert car.state == "in_use"
    car.engine(False)
    car.brake(False)
    assert car.command("end").code == "end_checks_failed"
    result = car.command("operator_end")
    assert (result.ok, result.code) == (True, "ended")
    assert result.data["failed"] == ["key", "brake"]
    assert (car.state, car.doors, car.immobilised) == ("forgotten_item_window", "locked", True)
    ended = car.reports("trip_ended")[-1]
    assert (ended["by"], ended["failed"]) == ("operator", ["key", "brake"])
    assert car.command("operator_end").code == "no_trip"


def test_service_mode_stops_every_start_and_is_refused_during_a_trip():
    # SPEC O-CAR-1, O-ROLE-1
    car = Car()
    result = car.command("service_mode", on=True)
    assert (result.ok, result.code) == (True, "service_mode_on")
    car.at(START)
    assert car.led == "dark"  # the reader does not invite a tap
    car.tap(ALICE)
    assert car.state == "idle" and car.reports("card_denied")[-1]["reason"] == "service_mode"
    assert car.command("start", reservation_id="r1").code == "service_mode"
    car = car.restart()
    assert car.command("start", reservation_id="r1").code == "service_mode"
    assert car.command("service_mode", on=False).code == "service_mode_off"
    assert car.led == "green_blink"
    car.tap(ALICE)
    assert car.state == "unlocked"
    result = car.command("service_mode", on=True)
    assert (result.ok, result.code) == (False, "car_busy")
    assert [r["on"] for r in car.reports("service_mode")] == [True, False]


@pytest.mark.parametrize("args", [{}, {"on": "yes"}, {"on": 1}])
def test_service_mode_names_a_missing_or_wrong_argument(args):
    # SPEC O-CAR-1, X-SEC-3: a clear error naming what was wrong
    car = Car()
    result = car.command("service_mode", **args)
    assert (result.ok, result.code, result.data["field"]) == (False, "bad_args", "on")
    body = messages.Command.new("car-1", "service_mode", START, 60, **args).to_body()
    with pytest.raises(messages.MessageError, match=r"args\.on"):
        messages.Command.from_body(body)


def test_self_test_reports_the_units_checks_and_its_parts():
    # SPEC O-CAR-1, O-ROLE-1 (the technician reads its reports)
    car = Car()
    result = car.command("self_test")
    assert (result.ok, result.code) == (True, "passed")
    report = result.data["report"]
    assert report["passed"] is True
    assert set(report["checks"]) == {
        "outputs",
        "deadlines",
        "state_round_trip",
        "board_link",
        "cloud_link",
        "reader",
    }
    assert report["checks"]["outputs"]["doors"] == "locked"
    assert car.reports("self_test")[-1]["passed"] is True
    # the outbox carries the whole report as the command's result
    outcome = car.reports("command_result")[-1]
    assert outcome["name"] == "self_test" and outcome["report"] == report


def test_self_test_fails_when_the_board_link_is_down():
    # SPEC O-CAR-1
    car = Car()
    car.runner.body.status_fields = lambda: {"board": {"up": False}}  # type: ignore[method-assign]
    result = car.command("self_test")
    assert (result.ok, result.code) == (False, "failed")
    assert result.data["report"]["checks"]["board_link"] == {
        "ok": False,
        "present": True,
        "up": False,
    }


def test_every_operator_command_yields_one_result_and_an_outbox_event():
    # SPEC S-SYNC-3, O-CAR-1: every outcome is on the cloud's timeline
    car = Car()
    for name in messages.OPERATOR_COMMANDS:
        args = {"on": False} if name == "service_mode" else {}
        car.command(name, **args)  # asserts exactly one result
    results = car.reports("command_result")
    assert [r["name"] for r in results] == list(messages.OPERATOR_COMMANDS)
    assert all(isinstance(r["code"], str) and r["code"] for r in results)
    assert Unlock() in [e for e in car.body.applied]  # the unlock of the idle car


def test_an_update_offer_reaches_the_agent_after_its_result_is_saved_in_any_state():
    # SPEC O-OTA-1, O-OTA-2: the offer is taken during a trip too; the agent decides when to
    # install, and every step it reports goes out as an `update_step` event
    car = Car()
    assert car.command("update", version="0.2.0").code == "updates_off"  # no agent: says so
    offered: list[tuple[str, int]] = []
    car.runner.updates = lambda v: offered.append((v, len(car.store.pending(limit=100))))
    car.start_by_card()
    car.take_key()
    pending = len(car.store.pending(limit=100))
    result = car.command("update", version="0.2.0")
    assert (result.ok, result.code, result.data["version"]) == (True, "update_offered", "0.2.0")
    assert offered == [("0.2.0", pending + 1)], "offered once, after the result was committed"
    assert car.state == "in_use", "an offer changes nothing of the trip"

    from firmware.inputs import UpdateStep

    car.send(UpdateStep("waiting", {"version": "0.2.0", "reason": "the car is not idle"}))
    [step] = car.reports("update_step")
    assert (step["step"], step["version"], step["reason"]) == (
        "waiting", "0.2.0", "the car is not idle",
    )  # fmt: skip
    with pytest.raises(ValueError, match="'rebooting' is not one of"):
        car.send(UpdateStep("rebooting", {"version": "0.2.0"}))
    with pytest.raises(messages.MessageError, match=r"args\.version"):
        messages.check_args("update", {})

"""During and at the end of a trip (SPEC U-USE-*, U-END-*)."""

from __future__ import annotations

import dataclasses

import pytest

from firmware.config import TripConfig
from firmware.effects import Hazard, Immobiliser, Lock, Prompt, ReaderLed, Unlock
from firmware.tests.harness import ALICE, END, HOUR, MIN, START, Car, bookings

STATION = (35.6812, 139.7671)
ELSEWHERE = (35.7000, 139.8000)


def config_with(**end_checks: str) -> TripConfig:
    config = TripConfig()
    return dataclasses.replace(
        config,
        end_checks=dataclasses.replace(config.end_checks, **end_checks),
        station=dataclasses.replace(config.station, lat=STATION[0], lon=STATION[1]),
    )


def test_during_the_trip_the_unit_never_locks_or_unlocks_on_its_own():
    # SPEC U-USE-1
    car = Car()
    car.drive_off()
    applied = len(car.body.applied)
    for door in ("driver", "tailgate", "passenger"):
        car.open_door(door)
        car.close_door(door)
    car.engine(False)
    car.brake(True)
    car.lights(True)
    car.advance(90 * MIN)
    car.engine(True)
    car.at(END + HOUR)
    new = car.body.applied[applied:]
    assert not any(isinstance(e, Lock | Unlock) for e in new)
    assert Immobiliser(True) not in new


def test_return_reminder_from_end_minus_10_00_repeating_until_the_end():
    # SPEC U-USE-2
    car = Car()
    car.drive_off()
    assert Prompt("return_reminder") not in car.at(END - 10 * MIN - 1)
    assert Prompt("return_reminder") in car.at(END - 10 * MIN)
    assert Prompt("return_reminder") not in car.at(END - 5 * MIN - 1)
    assert Prompt("return_reminder") in car.at(END - 5 * MIN)
    assert Prompt("return_reminder") not in car.at(END - 1)


def test_an_extension_moves_the_reminder_and_the_overtime_point_at_once():
    # SPEC U-USE-3
    car = Car()
    car.drive_off()
    car.at(END - 20 * MIN)
    car.new_bookings(bookings(version=2, alice_end=END + 15 * MIN))
    assert Prompt("return_reminder") not in car.at(END - 10 * MIN)
    assert Prompt("overtime") not in car.at(END)
    assert Prompt("return_reminder") in car.at(END + 5 * MIN)
    assert Prompt("overtime") in car.at(END + 15 * MIN)


def test_overtime_is_reported_and_the_car_keeps_working():
    # SPEC U-USE-4
    car = Car()
    car.drive_off()
    effects = car.at(END)
    assert Prompt("overtime") in effects
    assert car.reports("overtime")[-1]["reservation_id"] == "r1"
    car.at(END + 3 * HOUR)
    assert car.state == "in_use"
    assert car.immobilised is False
    assert len(car.reports("overtime")) == 1
    car.park()
    car.tap(ALICE)
    ended = car.reports("trip_ended")[-1]
    assert ended["overtime_s"] == 3 * HOUR


@pytest.mark.parametrize(
    ("spoil", "check"),
    [
        (lambda car: car.engine(True), "engine"),
        (lambda car: car.take_key(), "key"),
        (lambda car: car.brake(False), "brake"),
        (lambda car: car.open_door("tailgate"), "doors"),
    ],
)
def test_each_failed_end_check_refuses_the_end_and_is_named(spoil, check):
    # SPEC U-END-1, U-END-4
    car = Car()
    car.drive_off()
    car.park()
    spoil(car)
    car.advance(1)
    state = car.state
    result = car.command("end")
    assert not result.ok
    assert result.data["failed"] == [check]
    assert Hazard(5) in car.effects
    assert Prompt("end_refused") in car.effects
    assert Prompt(f"check_{check}") in car.effects
    assert car.state == state  # the trip goes on unchanged
    assert not car.emitted(Lock)


def test_a_refused_card_end_names_every_failed_check():
    # SPEC U-END-4
    car = Car()
    car.drive_off()
    car.park()
    car.brake(False)
    car.open_door("rear_left")
    assert car.led == "dark"  # U-END-2: no orange while a blocking check fails
    car.tap(ALICE)
    assert car.state == "returning"
    assert car.prompts == ["end_refused", "check_brake", "check_doors"]
    assert car.reports("end_refused")[-1]["failed"] == ["brake", "doors"]


def test_lights_on_are_warned_about_by_default():
    # SPEC U-END-1
    car = Car()
    car.drive_off()
    car.park()
    car.lights(True)
    assert car.led == "orange_blink"
    car.tap(ALICE)
    assert car.state == "forgotten_item_window"
    assert "check_lights" in car.prompts
    assert car.reports("trip_ended")[-1]["warnings"] == ["lights"]


def test_lights_on_block_when_configured():
    # SPEC U-END-1
    car = Car(config=config_with(lights="block"))
    car.drive_off()
    car.park()
    car.lights(True)
    assert car.command("end").data["failed"] == ["lights"]
    car.lights(False)
    assert car.command("end").ok


def test_outside_the_geofence_warns_or_blocks_by_configuration():
    # SPEC U-END-1
    warn = Car(config=config_with())
    warn.drive_off()
    warn.position(*ELSEWHERE)
    warn.park()
    result = warn.command("end")
    assert result.ok and result.data["warnings"] == ["position"]
    block = Car(config=config_with(geofence="block"))
    block.drive_off()
    block.position(*ELSEWHERE)
    block.park()
    assert block.command("end").data["failed"] == ["position"]
    block.position(STATION[0] + 0.0002, STATION[1])  # about 22 m away: inside 50 m
    assert block.command("end").ok


def test_orange_blink_when_the_car_can_be_ended_then_a_tap_ends_it():
    # SPEC U-END-2, U-FB-1
    car = Car()
    car.drive_off()
    car.brake(False)
    assert car.led == "dark"  # in use: nothing to do at the reader
    car.engine(False)
    car.return_key()
    assert car.led == "dark"  # the parking brake is off
    assert ReaderLed("orange_blink") in car.brake(True)
    car.tap(ALICE)
    assert car.state == "forgotten_item_window"


def test_a_successful_end_records_and_locks_without_the_network():
    # SPEC U-END-3, U-FB-2, U-FB-3
    car = Car()
    car.drive_off()
    car.position(*STATION)
    car.vehicle(odometer_km=12345.6, fuel_pct=62.0)
    car.park()
    car.at(END - 5 * MIN)
    effects = car.tap(ALICE)
    assert [e for e in effects if isinstance(e, Lock | Hazard | Immobiliser)] == [
        Lock(),
        Hazard(1),
        Immobiliser(True),
    ]
    assert "end_ok" in car.prompts
    assert car.led == "forgotten_blink"
    ended = car.reports("trip_ended")[-1]
    assert ended["position"] == list(STATION)
    assert (ended["odometer_km"], ended["fuel_pct"]) == (12345.6, 62.0)
    assert ended["ended_at"] == END - 5 * MIN
    assert ended["overtime_s"] == 0
    assert ended["by"] == "card"


def test_a_remote_end_is_the_same_operation():
    # SPEC U-END-2, U-END-3
    car = Car()
    car.drive_off()
    car.park()
    result = car.command("end")
    assert result.ok
    assert Lock() in car.effects and Hazard(1) in car.effects
    assert car.reports("trip_ended")[-1]["by"] == "remote"


def test_after_the_end_the_key_cannot_start_the_engine():
    # SPEC U-END-5
    car = Car()
    car.drive_off()
    car.park()
    car.tap(ALICE)
    car.tap(ALICE)  # forgotten-item unlock: the driver is back inside
    after_end = len(car.body.applied)
    car.take_key()
    car.return_key()
    car.take_key()
    assert car.immobilised is True
    assert Immobiliser(False) not in car.body.applied[after_end:]
    car.advance(10 * MIN)
    assert car.immobilised is True


def test_a_security_locked_car_can_be_ended_remotely():
    # SPEC U-END-2: "一旦利用終了操作をして予約を取り直して" (guide §10)
    car = Car()
    car.start_by_card()
    car.at(START + 60)
    assert car.state == "security_locked"
    assert car.command("end").ok
    assert car.state == "forgotten_item_window"


def test_end_without_a_trip_is_refused():
    # SPEC S-SYNC-3: every command gets its one result
    car = Car()
    result = car.command("end")
    assert (result.ok, result.code) == (False, "no_trip")


def test_after_a_long_outage_only_the_latest_reminder_is_played():
    # SPEC U-USE-2, U-DATA-1: deadlines replay in order, stale announcements are not repeated
    car = Car()
    car.drive_off()
    car.clock.set(END - 1)
    restarted = car.restart()
    assert restarted.body.car.prompts.count("return_reminder") == 1
    assert Prompt("overtime") in restarted.at(END)

"""The guide's trip, end to end through every real part: the phone, the cloud, the broker, the
car unit, the reader with an emulated card and the board under MicroPython.

Each scenario asserts what a person beside the car would see (relays, hazard lamps, prompts, the
reader's LED, the state) and what the phone site shows.
"""

from __future__ import annotations

import datetime as dt

import pytest

from firmware.config import Feedback
from hil_tests.steps import (
    BOB,
    SCENARIO,
    advance_to,
    at,
    deadline,
    get_in_and_drive,
    park_at_station,
    reserve,
    start_remotely,
    wait_blinking_done,
    wait_held,
    wait_immobilised,
    wait_mail,
    wait_phone_status,
)
from tools.rig.car import Rig

pytestmark = pytest.mark.needs(*SCENARIO)

MIN = dt.timedelta(minutes=1)
FEEDBACK = Feedback()  # the hazard blink counts of U-FB-2, as the car is configured


def test_a_whole_trip_by_card_from_reservation_to_idle(rig: Rig) -> None:
    rig.park()  # the car waits in its station
    # SPEC S-SYNC-1: reserved through the phone, the car holds it within a second
    bob = reserve(rig, BOB, minutes=60)
    assert wait_phone_status(bob, "reserved")

    # SPEC U-START-1, U-START-2, U-START-3: at start−15 the reader is dark and a tap is denied
    advance_to(rig, bob.start - 15 * MIN)
    assert rig.outputs["led"] == "dark"
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "idle"
    rig.wait_since(mark, "the denial prompt", prompts=["card_denied"])
    seen = rig.outputs
    assert (seen["state"], seen["doors"], seen["led"], seen["immobilised"]) == (
        "idle",
        "locked",
        "dark",
        True,
    )
    assert rig.since(mark)["unlocks"] == 0

    # SPEC U-START-2: at start−14 the reader blinks green
    advance_to(rig, bob.start - 14 * MIN)
    assert rig.outputs["led"] == "green_blink"

    # SPEC U-START-4, U-FB-2, U-FB-3: the tap → hazard ×2, unlock, "start OK", `unlocked`
    start = rig.mark()
    assert rig.tap(BOB)["state"] == "unlocked"
    rig.wait_since(start, "the unlock", unlocks=1)
    wait_blinking_done(rig, start, FEEDBACK.hazard_start)
    assert rig.outputs["doors"] == "unlocked"
    assert rig.since(start)["prompts"] == ["start_ok"]
    assert rig.outputs["immobilised"] is True  # the key is still in the box (U-SEC-5)
    wait_phone_status(bob, "in_use")

    # SPEC U-SEC-1: no door opened for 1 minute → the doors lock, `security_locked`
    mark = rig.mark()
    rig.advance(minutes=1)
    rig.wait_since(mark, "the security lock", locks=1, prompts=["security_locked"])
    seen = rig.outputs
    assert (seen["state"], seen["doors"], seen["immobilised"]) == (
        "security_locked",
        "locked",
        True,
    )

    # SPEC U-SEC-4, S-SYNC-3: re-unlock from the phone; the API answers with the car's result
    mark = rig.mark()
    answer = bob.phone.operate(bob.id, "reunlock")
    assert (answer["ok"], answer["code"], answer["data"]["state"]) == (True, "unlocked", "unlocked")
    rig.wait_since(mark, "the re-unlock", unlocks=1)
    assert (rig.outputs["state"], rig.outputs["doors"]) == ("unlocked", "unlocked")
    assert rig.since(start)["hazard_blinks"] == FEEDBACK.hazard_start  # only at the start

    # SPEC U-SEC-5: door open, key taken → `in_use`, the immobiliser released
    get_in_and_drive(rig, km=12.0)
    wait_immobilised(rig, False)
    assert rig.outputs["state"] == "in_use"

    # SPEC U-USE-2: the return reminder at end−10
    mark = rig.mark()
    advance_to(rig, bob.end - 10 * MIN)
    rig.wait_since(mark, "the return reminder", prompts=["return_reminder"])

    # SPEC C-EXT-1, U-USE-3, S-SYNC-1: extended by the phone; the car gets the new end at once
    extended = bob.phone.extend(bob.id)
    new_end = bob.end + 15 * MIN
    assert (at(extended["end"]), extended["extensions"]) == (new_end, 1)
    wait_held(rig, bob, end=new_end)
    assert deadline(rig, "reminder") == new_end - 10 * MIN
    assert deadline(rig, "overtime") == new_end
    wait_mail(rig, "延長受付", bob.email)  # SPEC N-MAIL-1
    # …so the old end−5 reminder and the old end's overtime never come; the new end−10 one does
    mark = rig.mark()
    advance_to(rig, new_end - 10 * MIN)
    rig.wait_since(mark, "the moved reminder", prompts=["return_reminder"])
    assert rig.since(mark)["prompts"] == ["return_reminder"]
    assert rig.outputs["state"] == "in_use"

    # SPEC U-END-1, U-END-4, U-FB-2: parked, key back, doors shut, but the parking brake off:
    # the reader does not offer the end, a tap is refused naming the brake, the trip goes on
    park_at_station(rig, brake=False)
    assert rig.outputs["led"] == "dark"
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "returning"
    rig.wait_since(mark, "the refused end", hazard_blinks=1, prompts=["end_refused", "check_brake"])
    assert rig.since(mark)["prompts"] == ["end_refused", "check_brake"]
    assert rig.since(mark)["locks"] == 0
    assert rig.outputs["immobilised"] is False

    # SPEC U-END-2: brake on → every check holds → the reader blinks orange
    rig.brake(True)
    assert rig.outputs["led"] == "orange_blink"
    wait_blinking_done(rig, mark, FEEDBACK.hazard_refused)

    # SPEC U-END-3, U-END-5, U-FB-2: the end tap → lock, hazard ×1, immobilised, "end OK"
    end = rig.mark()
    assert rig.tap(BOB)["state"] == "forgotten_item_window"
    rig.wait_since(end, "the lock and hazard ×1", locks=1, hazard_blinks=1, prompts=["end_ok"])
    wait_immobilised(rig, True)
    assert rig.outputs["doors"] == "locked"
    assert rig.outputs["led"] == "forgotten_blink"  # SPEC U-FGT-1, U-FB-1

    # SPEC N-MAIL-1, U-END-3: the phone shows the trip ended and the trip-end mail went out
    assert wait_phone_status(bob, "completed")["extensions"] == 1
    mail = wait_mail(rig, "利用終了受付", bob.email)
    (invoice,) = [i for i in bob.phone.invoices() if i["reservation_id"] == bob.id]
    assert f"予約番号: {bob.id}" in mail and "走行距離: 12.0 km" in mail
    assert f"ご請求額: {invoice['total_yen']:,}円" in mail

    # SPEC U-FGT-1: a tap unlocks once; U-END-5: the key cannot start the engine meanwhile
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "forgotten_item_window"
    rig.wait_since(mark, "the forgotten-item unlock", unlocks=1, prompts=["forgotten_unlocked"])
    assert rig.outputs["doors"] == "unlocked"
    rig.open_door("driver")
    rig.take_key()
    assert rig.outputs["state"] == "forgotten_item_window"
    assert rig.outputs["immobilised"] is True
    rig.return_key()
    rig.close_door("driver")

    # SPEC U-FGT-2: the second tap locks and the window is over: idle, reader dark
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "idle"
    rig.wait_since(mark, "the forgotten-item lock", locks=1, prompts=["forgotten_locked"])
    seen = rig.outputs
    assert (seen["state"], seen["doors"], seen["led"], seen["immobilised"]) == (
        "idle",
        "locked",
        "dark",
        True,
    )
    assert rig.since(end)["hazard_blinks"] == FEEDBACK.hazard_end  # once, at the end only


def test_the_reader_blinks_green_until_start_plus_31_then_a_tap_is_too_late(rig: Rig) -> None:
    # SPEC U-START-2: the green window is start−14 … start+31; after it the reader is dark
    bob = reserve(rig, BOB, minutes=120)
    advance_to(rig, bob.start + 30 * MIN)
    assert rig.outputs["led"] == "green_blink"
    advance_to(rig, bob.start + 31 * MIN)
    assert rig.outputs["led"] == "dark"
    # a tap now opens nothing: the prompt sends the driver to the phone (U-FB-3)
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "idle"
    rig.wait_since(mark, "the use-the-phone prompt", prompts=["use_phone"])
    got = rig.since(mark)
    assert (got["unlocks"], got["hazard_blinks"], got["prompts"]) == (0, 0, ["use_phone"])
    seen = rig.outputs
    assert (seen["doors"], seen["led"], seen["immobilised"]) == ("locked", "dark", True)
    assert wait_phone_status(bob, "reserved")


def test_remote_start_and_remote_end_answer_with_the_cars_result(rig: Rig) -> None:
    rig.park()
    bob = reserve(rig, BOB, minutes=60)

    # SPEC U-START-5, S-SYNC-3: the remote start keeps the window: at start−15 the car says no
    advance_to(rig, bob.start - 15 * MIN)
    mark = rig.mark()
    early = bob.phone.operate(bob.id, "start")
    assert (early["ok"], early["code"]) == (False, "outside_window")
    assert rig.state == "idle" and rig.since(mark)["unlocks"] == 0

    # SPEC U-START-5, U-START-4: from start−14 it is the tap's operation without the card
    mark = rig.mark()
    answer = start_remotely(rig, bob)
    assert (answer["ok"], answer["code"], answer["data"]["reservation_id"]) == (
        True,
        "started",
        bob.id,
    )
    assert (rig.outputs["state"], rig.outputs["doors"]) == ("unlocked", "unlocked")
    assert rig.since(mark)["prompts"] == ["start_ok"]
    wait_phone_status(bob, "in_use")

    get_in_and_drive(rig, km=5.0)
    advance_to(rig, bob.start + 20 * MIN)
    park_at_station(rig, brake=False)

    # SPEC U-END-2, U-END-4, S-SYNC-3: a remote end with the brake off returns the failed check
    mark = rig.mark()
    refused = bob.phone.operate(bob.id, "end")
    assert (refused["ok"], refused["code"], refused["data"]["failed"]) == (
        False,
        "end_checks_failed",
        ["brake"],
    )
    rig.wait_since(mark, "the refused end", hazard_blinks=1, prompts=["end_refused", "check_brake"])
    assert rig.state == "returning" and rig.since(mark)["locks"] == 0
    assert wait_phone_status(bob, "in_use")

    # SPEC U-END-2, U-END-3: brake on, the remote end is the end tap's operation
    rig.brake(True)
    wait_blinking_done(rig, mark, FEEDBACK.hazard_refused)
    end = rig.mark()
    ended = bob.phone.operate(bob.id, "end")
    assert (ended["ok"], ended["code"]) == (True, "ended")
    rig.wait_since(end, "the lock and hazard ×1", locks=1, hazard_blinks=1, prompts=["end_ok"])
    wait_immobilised(rig, True)
    assert (rig.outputs["state"], rig.outputs["doors"]) == ("forgotten_item_window", "locked")
    wait_phone_status(bob, "completed")
    wait_mail(rig, "利用終了受付", bob.email)  # SPEC N-MAIL-1

    # S-SYNC-3: a second end is answered by the car too, and changes nothing
    again = bob.phone.operate(bob.id, "end")
    assert (again["ok"], again["code"]) == (False, "no_trip")
    assert rig.since(end)["locks"] == 1

"""Starting a trip: windows, cards, licences and the reader (SPEC U-START-*, U-LIC-1, U-FB-1)."""

from __future__ import annotations

import datetime as dt

import pytest

from firmware.effects import Hazard, Immobiliser, Lock, ReaderLed, Unlock
from firmware.tests.harness import (
    ALICE,
    BOB,
    END,
    HOUR,
    JST,
    MIN,
    START,
    STRANGER,
    Car,
    bookings,
)


def test_tap_at_start_minus_14_00_opens():
    # SPEC U-START-1, U-START-2
    car = Car()
    car.at(START - 14 * MIN)
    car.tap(ALICE)
    assert car.state == "unlocked"
    assert car.doors == "unlocked"


def test_tap_at_start_minus_14_01_does_not_open():
    # SPEC U-START-1, U-START-3
    car = Car()
    car.at(START - 14 * MIN - 1)
    car.tap(ALICE)
    assert car.state == "idle"
    assert car.doors == "locked"
    assert not car.emitted(Unlock)
    assert car.reports("card_denied")[-1]["reason"] == "no_reservation"


def test_reader_window_closes_at_start_plus_31_00():
    # SPEC U-START-2: the reader blinks green for 45 minutes from start−14
    car = Car()
    car.at(START + 31 * MIN - 1)
    assert car.led == "green_blink"
    car.at(START + 31 * MIN)
    assert car.led == "dark"
    car.tap(ALICE)
    assert car.state == "idle"
    assert "use_phone" in car.prompts
    assert car.reports("card_denied")[-1]["reason"] == "reader_window_closed"


def test_tap_at_start_plus_30_59_still_opens():
    # SPEC U-START-2
    car = Car()
    car.at(START + 31 * MIN - 1)
    car.tap(ALICE)
    assert car.state == "unlocked"


def test_reader_is_dark_before_the_window_and_blinks_green_from_start_minus_14():
    # SPEC U-START-2, U-FB-1
    car = Car()
    car.at(START - 14 * MIN - 1)
    assert car.led == "dark"
    effects = car.at(START - 14 * MIN)
    assert ReaderLed("green_blink") in effects
    assert car.led == "green_blink"


def test_valid_start_blinks_hazards_twice_then_unlocks_without_the_network():
    # SPEC U-START-4, U-FB-2: decided from the bookings held, no round trip
    car = Car()
    car.at(START)
    effects = car.tap(ALICE)
    assert effects.index(Hazard(2)) < effects.index(Unlock())
    assert ReaderLed("red_solid") in effects  # U-FB-1: accepted
    assert "start_ok" in car.prompts
    assert car.immobilised is True  # the key is still in the box
    started = car.reports("trip_started")
    assert len(started) == 1
    assert started[0]["reservation_id"] == "r1"
    assert started[0]["by"] == "card"
    assert car.runner.cloud.wakeups >= 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("card", "reason"),
    [(BOB, "no_reservation"), (STRANGER, "unknown_card")],
)
def test_other_and_unknown_cards_are_denied_and_nothing_else_changes(card, reason):
    # SPEC U-START-3, U-FB-3
    car = Car()
    car.at(START)
    before = car.body.car.to_dict()
    effects = car.tap(card)
    assert car.state == "idle"
    assert not any(isinstance(e, Unlock | Lock | Immobiliser | Hazard) for e in effects)
    assert ReaderLed("error") in effects
    assert "card_denied" in car.prompts
    assert car.reports("card_denied")[-1]["reason"] == reason
    assert car.led == "green_blink"  # back to what it showed
    after = car.body.car.to_dict()
    assert (after["doors"], after["immobilised"]) == (before["doors"], before["immobilised"])


def test_a_revoked_card_is_denied():
    # SPEC U-START-3, U-CARD-4: the new snapshot no longer holds the card
    car = Car()
    car.new_bookings(bookings(version=2, alice_cards=()))
    car.at(START)
    car.tap(ALICE)
    assert car.state == "idle"
    assert car.reports("card_denied")[-1]["reason"] == "unknown_card"


def test_an_expired_licence_cannot_start():
    # SPEC U-LIC-1, U-START-3
    yesterday = (dt.datetime.fromtimestamp(START, JST).date() - dt.timedelta(days=1)).isoformat()
    car = Car(books=bookings(alice_licence=yesterday))
    car.at(START)
    car.tap(ALICE)
    assert car.state == "idle"
    assert car.reports("card_denied")[-1]["reason"] == "licence_expired"
    result = car.command("start", reservation_id="r1")
    assert (result.ok, result.code) == (False, "licence_expired")


def test_a_licence_is_valid_through_its_expiry_day_in_local_time():
    # SPEC U-LIC-1: the expiry day is a Japanese calendar day
    today = dt.datetime.fromtimestamp(START, JST).date().isoformat()
    car = Car(books=bookings(alice_licence=today))
    car.at(START)
    car.tap(ALICE)
    assert car.state == "unlocked"


def test_licence_expiring_at_local_midnight_blocks_a_late_evening_start_in_utc_terms():
    # SPEC U-LIC-1: 00:10 JST on the 24th is still the 23rd in UTC; the licence ends on the 23rd
    late = dt.datetime(2026, 11, 24, 0, 10, tzinfo=JST).timestamp()
    books = bookings(alice_licence="2026-11-23")
    books = type(books)(
        books.version,
        (type(books.reservations[0])("r1", books.reservations[0].driver_id, late, late + HOUR),),
        books.drivers,
    )
    car = Car(books=books, t=late - HOUR)
    car.at(late)
    car.tap(ALICE)
    assert car.state == "idle"
    assert car.reports("card_denied")[-1]["reason"] == "licence_expired"


def test_remote_start_works_from_start_minus_14_until_the_end():
    # SPEC U-START-1, U-START-5
    car = Car()
    car.at(START - 14 * MIN - 1)
    assert car.command("start", reservation_id="r1").code == "outside_window"
    car.at(END - 1)
    result = car.command("start", reservation_id="r1")
    assert result.ok
    assert car.state == "unlocked"
    assert Hazard(2) in car.effects and Unlock() in car.effects


def test_remote_start_at_the_end_is_refused():
    # SPEC U-START-1: until its end, not at it
    car = Car()
    car.at(END)
    assert car.command("start", reservation_id="r1").code == "outside_window"
    assert car.state == "idle"


def test_remote_start_at_start_minus_14_00():
    # SPEC U-START-5
    car = Car()
    car.at(START - 14 * MIN)
    assert car.command("start", reservation_id="r1").ok


def test_a_trip_started_remotely_after_the_reader_went_dark_ends_only_remotely():
    # SPEC U-START-2
    car = Car()
    car.at(START + 40 * MIN)
    assert car.command("start", reservation_id="r1").ok
    car.open_door()
    car.take_key()
    car.close_door()
    car.advance(30 * MIN)
    car.park()
    assert car.led == "dark"  # the reader does not blink orange for this trip
    car.tap(ALICE)
    assert car.state == "returning"
    assert "use_phone" in car.prompts
    assert not car.emitted(Unlock)
    assert car.command("end").ok
    assert car.state == "forgotten_item_window"


def test_a_remote_start_while_the_reader_blinks_may_be_ended_by_card():
    # SPEC U-START-2
    car = Car()
    car.at(START)
    car.command("start", reservation_id="r1")
    car.open_door()
    car.take_key()
    car.park()
    assert car.led == "orange_blink"
    car.tap(ALICE)
    assert car.state == "forgotten_item_window"


def test_a_reservation_once_used_cannot_start_again():
    # SPEC U-FGT-3: after the window the only way in is a new reservation
    car = Car()
    car.drive_off()
    car.park()
    car.tap(ALICE)
    car.advance(10 * MIN)
    assert car.state == "idle"
    car.tap(ALICE)
    assert car.state == "idle"
    assert car.command("start", reservation_id="r1").code == "already_used"


def test_another_drivers_card_cannot_open_a_car_in_use():
    # SPEC U-START-3
    car = Car()
    car.drive_off()
    car.tap(BOB)
    assert car.state == "in_use"
    assert car.reports("card_denied")[-1]["reason"] == "car_in_use"
    assert car.command("start", reservation_id="r2").code == "car_busy"

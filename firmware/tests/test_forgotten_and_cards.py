"""The forgotten-item window (SPEC U-FGT-*), card registration (U-CARD-*) and feedback (U-FB-*)."""

from __future__ import annotations

from firmware.effects import LED_PATTERNS, Immobiliser, Lock, Prompt, ReaderLed, Unlock
from firmware.prompts import BY_ID, CATALOGUE, CHECK_PROMPTS
from firmware.tests.harness import (
    ALICE,
    BOB,
    END,
    KEY,
    MIN,
    START,
    STRANGER,
    Car,
    bookings,
)
from protocol.cards import card_hash


def ended_car() -> Car:
    car = Car()
    car.drive_off()
    car.park()
    car.at(START + 90 * MIN)
    car.tap(ALICE)
    assert car.state == "forgotten_item_window"
    return car


def test_one_unlock_for_a_forgotten_item_within_10_minutes_engine_stays_immobilised():
    # SPEC U-FGT-1
    car = ended_car()
    assert car.led == "forgotten_blink"
    car.at(START + 90 * MIN + 10 * MIN - 1)
    effects = car.tap(ALICE)
    assert Unlock() in effects
    assert "forgotten_unlocked" in car.prompts
    assert car.doors == "unlocked"
    assert car.immobilised is True
    assert Immobiliser(False) not in effects


def test_the_second_tap_locks_and_the_reader_goes_dark():
    # SPEC U-FGT-2
    car = ended_car()
    car.tap(ALICE)
    car.open_door()
    car.close_door()
    effects = car.tap(ALICE)
    assert Lock() in effects
    assert car.led == "dark"
    assert car.state == "idle"
    assert car.reports("forgotten_window_closed")[-1]["reason"] == "locked"


def test_only_one_forgotten_item_unlock_per_trip():
    # SPEC U-FGT-3
    car = ended_car()
    assert car.command("forgotten_unlock").ok
    assert car.command("forgotten_unlock").code == "already_unlocked"
    assert car.command("forgotten_lock").ok
    assert car.state == "idle"
    assert car.command("forgotten_unlock").code == "no_forgotten_window"
    car.tap(ALICE)
    assert car.doors == "locked"
    assert len(car.reports("forgotten_unlocked")) == 1


def test_the_window_closes_at_10_00():
    # SPEC U-FGT-1, U-FGT-3
    car = ended_car()
    car.at(START + 100 * MIN - 1)
    assert car.state == "forgotten_item_window"
    car.at(START + 100 * MIN)
    assert car.state == "idle"
    assert car.led == "dark"
    car.tap(ALICE)
    assert car.doors == "locked"
    assert car.reports("card_denied")[-1]["reason"] == "no_reservation"


def test_a_window_that_runs_out_with_a_door_open_locks_once_all_are_closed():
    # SPEC U-FGT-4
    car = ended_car()
    car.tap(ALICE)
    car.open_door("tailgate")
    effects = car.at(START + 100 * MIN)
    assert Lock() not in effects
    assert car.state == "forgotten_item_window"
    assert car.led == "dark"
    car.tap(ALICE)  # the window is over: no lock-by-card, no second unlock
    assert car.doors == "unlocked"
    effects = car.close_door("tailgate")
    assert Lock() in effects
    assert car.state == "idle"
    assert car.reports("forgotten_window_closed")[-1]["reason"] == "timeout_locked"


def test_a_window_that_runs_out_with_the_doors_closed_but_unlocked_locks_at_once():
    # SPEC U-FGT-4
    car = ended_car()
    assert car.command("forgotten_unlock").ok
    effects = car.at(START + 100 * MIN)
    assert Lock() in effects
    assert car.state == "idle"


def test_forgotten_item_lock_with_a_door_open_is_refused_and_named():
    # SPEC U-FGT-2, U-END-4 (the driver hears which check failed)
    car = ended_car()
    car.tap(ALICE)
    car.open_door("passenger")
    result = car.command("forgotten_lock")
    assert (result.ok, result.code) == (False, "doors_open")
    assert Prompt("check_doors") in car.effects
    assert car.doors == "unlocked"


def test_another_card_cannot_use_the_forgotten_item_window():
    # SPEC U-FGT-1, X-SAFE-2
    car = ended_car()
    for card in (BOB, STRANGER):
        car.tap(card)
        assert car.doors == "locked"


def test_registration_mode_from_start_minus_14_00_blinks_green_and_yellow():
    # SPEC U-CARD-1, U-FB-1
    car = Car()
    car.at(START - 14 * MIN - 1)
    assert car.command("register_card", reservation_id="r1").code == "not_now"
    car.at(START - 14 * MIN)
    result = car.command("register_card", reservation_id="r1")
    assert result.ok
    assert car.overlay == "registering"
    assert car.led == "green_yellow_blink"


def test_the_next_tap_registers_the_card_to_the_reserving_driver_by_hash_only():
    # SPEC U-CARD-2
    car = Car()
    car.at(START)
    car.command("register_card", reservation_id="r1")
    new_card = bytes.fromhex("0a0b0c0d0e0f1011")
    effects = car.tap(new_card)
    assert not car.emitted(Unlock)
    assert car.state == "idle"
    assert Prompt("card_registered") in effects
    registered = car.reports("card_registered")[-1]
    assert registered["driver_id"] == "XXY00001001"
    assert registered["card"] == card_hash(KEY, new_card)
    assert new_card.hex() not in str(car.reports())  # the IDm never leaves the reader
    assert car.led == "green_blink"  # back to what it showed
    assert car.overlay == "off"


def test_registration_during_the_trip():
    # SPEC U-CARD-1
    car = Car()
    car.drive_off()
    assert car.command("register_card", reservation_id="r1").ok
    car.tap(STRANGER)
    assert car.reports("card_registered")[-1]["card"] == card_hash(KEY, STRANGER)
    assert car.state == "in_use"
    assert car.command("register_card", reservation_id="r2").code == "not_now"


def test_registration_mode_ends_after_60_s_without_a_tap():
    # SPEC U-CARD-3
    car = Car()
    car.at(START)
    car.command("register_card", reservation_id="r1")
    car.at(START + 59)
    assert car.led == "green_yellow_blink"
    effects = car.at(START + 60)
    assert ReaderLed("green_blink") in effects
    assert car.overlay == "off"
    assert car.reports("registration_ended")[-1]["reason"] == "timeout"
    car.tap(STRANGER)
    assert car.reports("card_denied")[-1]["reason"] == "unknown_card"


def test_a_card_registered_in_the_cloud_opens_as_soon_as_the_car_has_it():
    # SPEC U-CARD-4
    car = Car()
    car.at(START)
    car.tap(STRANGER)
    assert car.state == "idle"
    car.new_bookings(bookings(version=2, alice_cards=(ALICE, STRANGER)))
    car.tap(STRANGER)
    assert car.state == "unlocked"


def test_a_revoked_card_never_opens_again_not_even_mid_trip():
    # SPEC U-CARD-4
    car = Car()
    car.start_by_card()
    car.at(START + 60)
    assert car.state == "security_locked"
    car.new_bookings(bookings(version=2, alice_cards=()))
    car.tap(ALICE)
    assert car.doors == "locked"
    assert car.reports("card_denied")[-1]["reason"] == "unknown_card"


def test_an_older_snapshot_is_ignored():
    # SPEC U-CARD-4: a stale snapshot cannot bring a revoked card back
    car = Car()
    car.new_bookings(bookings(version=3, alice_cards=()))
    car.new_bookings(bookings(version=2))
    car.at(START)
    car.tap(ALICE)
    assert car.state == "idle"


def test_every_prompt_has_an_id_a_clip_and_japanese_and_english_text():
    # SPEC U-FB-4
    assert len({p.id for p in CATALOGUE}) == len(CATALOGUE)
    assert len({p.clip for p in CATALOGUE}) == len(CATALOGUE)
    for p in CATALOGUE:
        assert p.ja and p.en and p.clip > 0
    assert set(CHECK_PROMPTS.values()) <= set(BY_ID)


def test_the_prompts_spec_asks_for_are_played_at_their_moments():
    # SPEC U-FB-3: start OK, end OK, end refused, reminder, overtime, security lock imminent
    # and done, card denied, card registered
    heard: set[str] = set()
    car = Car()
    car.at(START)
    car.tap(BOB)
    heard |= set(car.prompts)
    car.command("register_card", reservation_id="r1")
    car.tap(STRANGER)
    heard |= set(car.prompts)
    car.tap(ALICE)
    heard |= set(car.prompts)
    car.open_door()
    car.close_door()
    for effects in (car.at(START + 9 * MIN), car.at(START + 10 * MIN)):
        heard |= {e.id for e in effects if isinstance(e, Prompt)}
    car.command("reunlock")
    car.take_key()
    car.brake(False)
    for effects in (car.at(END - 10 * MIN), car.at(END)):
        heard |= {e.id for e in effects if isinstance(e, Prompt)}
    car.return_key()
    car.tap(ALICE)
    heard |= set(car.prompts)
    car.brake(True)
    car.tap(ALICE)
    heard |= set(car.prompts)
    expected = {
        "start_ok",
        "end_ok",
        "end_refused",
        "return_reminder",
        "overtime",
        "security_lock_imminent",
        "security_locked",
        "card_denied",
        "card_registered",
    }
    assert expected <= heard


def test_every_led_pattern_the_core_shows_is_one_the_board_knows():
    # SPEC U-FB-1
    car = Car()
    car.drive_off()
    car.park()
    car.tap(ALICE)
    car.tap(BOB)
    shown = {e.pattern for e in car.body.applied if isinstance(e, ReaderLed)}
    assert shown <= set(LED_PATTERNS)
    assert {"green_blink", "red_solid", "orange_blink", "forgotten_blink", "error"} <= shown


def test_forgotten_item_lock_waits_for_a_running_engine():
    # SPEC X-SAFE-1, U-FGT-2 (a second key or a sensor fault: never lock on a running engine)
    car = ended_car()
    car.tap(ALICE)
    car.engine(True)
    car.tap(ALICE)
    assert Lock() not in car.effects
    assert Prompt("check_engine") in car.effects
    assert car.state == "forgotten_item_window"
    assert car.command("forgotten_lock").code == "engine_running"
    car.engine(False)
    car.tap(ALICE)
    assert Lock() in car.effects
    assert car.state == "idle"

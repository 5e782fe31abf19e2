"""Security timers and re-unlock (SPEC U-SEC-*), and the engine rule X-SAFE-1."""

from __future__ import annotations

from firmware.effects import Immobiliser, Lock, Prompt, Unlock
from firmware.tests.harness import ALICE, BOB, END, MIN, START, STRANGER, Car


def test_no_door_opened_within_1_00_locks_again():
    # SPEC U-SEC-1
    car = Car()
    car.start_by_card()
    car.at(START + 60 - 1)
    assert car.state == "unlocked"
    assert car.doors == "unlocked"
    effects = car.at(START + 60)
    assert Lock() in effects
    assert car.state == "security_locked"
    assert car.doors == "locked"
    assert car.reports("security_locked")[-1]["reason"] == "no_door_opened"
    assert Prompt("security_locked") in effects


def test_a_door_opened_at_0_59_stops_the_door_timer():
    # SPEC U-SEC-1
    car = Car()
    car.start_by_card()
    car.at(START + 59)
    car.open_door("passenger")
    car.close_door("passenger")
    car.at(START + 5 * MIN)
    assert car.state == "unlocked"
    assert car.doors == "unlocked"


def test_key_not_taken_within_10_00_locks_and_immobilises():
    # SPEC U-SEC-2, U-FB-3 (security lock imminent, then done)
    car = Car()
    car.start_by_card()
    car.open_door()
    car.close_door()
    assert Prompt("security_lock_imminent") in car.at(START + 9 * MIN)
    car.at(START + 10 * MIN - 1)
    assert car.state == "unlocked"
    effects = car.at(START + 10 * MIN)
    assert Lock() in effects
    assert car.state == "security_locked"
    assert (car.doors, car.immobilised) == ("locked", True)
    assert car.reports("security_locked")[-1]["reason"] == "key_not_taken"


def test_key_taken_at_9_59_starts_the_trip_in_use():
    # SPEC U-SEC-2, U-SEC-5
    car = Car()
    car.start_by_card()
    car.open_door()
    car.at(START + 10 * MIN - 1)
    effects = car.take_key()
    assert Immobiliser(False) in effects
    assert car.state == "in_use"
    car.at(START + 30 * MIN)
    assert car.state == "in_use"
    assert car.immobilised is False


def test_key_returned_during_the_trip_locks_after_10_00():
    # SPEC U-SEC-3
    car = Car()
    car.drive_off()
    car.engine(False)
    car.at(START + HOUR_HALF)
    car.return_key()
    assert car.state == "returning"
    car.at(START + HOUR_HALF + 10 * MIN - 1)
    assert car.state == "returning"
    effects = car.at(START + HOUR_HALF + 10 * MIN)
    assert Lock() in effects and Immobiliser(True) in effects
    assert car.state == "security_locked"
    assert car.reports("security_locked")[-1]["reason"] == "key_returned"


HOUR_HALF = 30 * MIN


def test_taking_the_key_out_again_within_10_minutes_cancels_the_lock():
    # SPEC U-SEC-3
    car = Car()
    car.drive_off()
    car.engine(False)
    car.at(START + HOUR_HALF)
    car.return_key()
    car.at(START + HOUR_HALF + 10 * MIN - 1)
    car.take_key()
    car.at(START + HOUR_HALF + 30 * MIN)
    assert car.state == "in_use"
    assert car.immobilised is False


def test_remote_reunlock_from_security_locked_unlocks_and_restarts_the_timers():
    # SPEC U-SEC-4
    car = Car()
    car.start_by_card()
    car.at(START + 60)
    assert car.state == "security_locked"
    car.at(START + 20 * MIN)
    result = car.command("reunlock")
    assert result.ok
    assert Unlock() in car.effects
    assert car.state == "unlocked"
    car.at(START + 21 * MIN - 1)
    assert car.state == "unlocked"
    car.at(START + 21 * MIN)  # the 1-minute door timer ran again
    assert car.state == "security_locked"


def test_reunlock_is_available_when_not_security_locked():
    # SPEC U-SEC-4: the button is shown throughout the trip
    car = Car()
    car.drive_off()
    car.engine(False)
    result = car.command("reunlock")
    assert result.ok
    assert Unlock() in car.effects
    assert car.state == "in_use"  # the key is out: no timers to restart
    assert car.immobilised is False


def test_a_tap_of_the_trip_drivers_card_during_the_reservation_reunlocks():
    # SPEC U-SEC-4
    car = Car()
    car.start_by_card()
    car.at(START + 60)
    assert car.state == "security_locked"
    car.tap(ALICE)
    assert Unlock() in car.effects
    assert car.state == "unlocked"


def test_after_the_reservation_end_a_tap_no_longer_reunlocks():
    # SPEC U-SEC-4: by card only during the reservation; the phone still works
    car = Car()
    car.start_by_card()
    car.at(START + 60)
    car.at(END)
    car.tap(ALICE)
    assert car.state == "security_locked"
    assert car.reports("card_denied")[-1]["reason"] == "reservation_over"
    assert car.command("reunlock").ok
    assert car.state == "unlocked"


def test_the_key_releases_the_immobiliser_only_during_a_trip():
    # SPEC U-SEC-5
    car = Car()
    car.at(START - HOUR_HALF)
    effects = car.take_key()
    assert not car.emitted(Immobiliser) and effects == []
    assert car.immobilised is True
    assert car.state == "idle"


def test_the_key_cannot_release_the_immobiliser_while_security_locked():
    # SPEC U-SEC-2, U-SEC-5
    car = Car()
    car.start_by_card()
    car.at(START + 10 * MIN)
    assert car.state == "security_locked"
    car.take_key()
    assert car.immobilised is True
    assert car.state == "security_locked"
    car.command("reunlock")  # with the key out the trip goes on in use
    assert car.state == "in_use"
    assert car.immobilised is False


def test_a_security_timer_never_locks_or_immobilises_while_the_engine_runs():
    # SPEC X-SAFE-1: a smart-key car started without taking the key
    car = Car()
    car.start_by_card()
    car.open_door()
    car.engine(True)
    car.at(START + 10 * MIN)
    assert not car.emitted(Lock) and not car.emitted(Immobiliser)
    car.at(START + 40 * MIN)
    assert car.state == "unlocked"
    assert car.doors == "unlocked"
    car.engine(False)  # the driver stops: the held lock comes a grace period later
    car.at(car.now + 60 - 1)
    assert car.state == "unlocked"
    effects = car.at(car.now + 1)
    assert Lock() in effects
    assert car.state == "security_locked"
    assert (car.doors, car.immobilised) == ("locked", True)


def test_a_returned_key_with_the_engine_running_does_not_lock():
    # SPEC X-SAFE-1, U-SEC-3
    car = Car()
    car.drive_off()
    car.return_key()  # engine still running
    car.at(START + HOUR_HALF)
    assert car.state == "returning"
    assert not any(isinstance(e, Lock) for e in car.effects)
    car.take_key()
    car.engine(False)
    car.at(START + HOUR_HALF * 2)
    assert car.state == "in_use"


def test_outputs_held_by_a_running_engine_go_out_when_it_stops():
    # SPEC X-SAFE-1, U-DATA-1: a unit restarted with the engine running does not lock
    car = Car()
    car.drive_off()
    car.park()
    car.tap(ALICE)
    car.at(START + 20 * MIN)
    assert car.state == "idle"
    car.engine(True)  # e.g. hot-wired, or a sensor fault: never lock on a running engine
    car = car.restart()
    assert Lock() not in car.body.applied
    assert Immobiliser(True) not in car.body.applied
    effects = car.engine(False)
    assert Lock() in effects and Immobiliser(True) in effects


def test_nothing_but_a_valid_tap_or_command_ever_unlocks():
    # SPEC X-SAFE-2: from every state, switches, time and strangers' cards never open the doors
    def states() -> list[Car]:
        idle = Car()
        unlocked = Car()
        unlocked.start_by_card()
        in_use = Car()
        in_use.drive_off()
        in_use.engine(False)
        returning = Car()
        returning.drive_off()
        returning.park()
        locked = Car()
        locked.start_by_card()
        locked.at(START + 60)
        window = Car()
        window.drive_off()
        window.park()
        window.tap(ALICE)
        return [idle, unlocked, in_use, returning, locked, window]

    for car in states():
        for poke in (
            lambda c: c.open_door("rear_right"),
            lambda c: c.close_door("rear_right"),
            lambda c: c.take_key(),
            lambda c: c.return_key(),
            lambda c: c.engine(True),
            lambda c: c.engine(False),
            lambda c: c.brake(False),
            lambda c: c.lights(True),
            lambda c: c.position(0.0, 0.0),
            lambda c: c.tap(STRANGER),
            lambda c: c.tap(BOB),
            lambda c: c.advance(7 * MIN),
            lambda c: c.command("fly"),
        ):
            state = car.state
            poke(car)
            assert Unlock() not in car.effects, state

"""The trip core and the board link: when the link comes back, every output the state implies
goes out again (the board may have restarted or been swapped), never against X-SAFE-1."""

from __future__ import annotations

from firmware.effects import Immobiliser, Lock, ReaderLed, Unlock
from firmware.inputs import BoardLinkChanged
from firmware.tests.harness import ALICE, MIN, START, Car

UP = BoardLinkChanged(True, "reconnected", {"name": "pico", "reset_cause": "watchdog"})
DOWN = BoardLinkChanged(False, "no heartbeat answer")


def outputs(effects: list) -> list:
    return [e for e in effects if isinstance(e, Lock | Unlock | Immobiliser | ReaderLed)]


def test_link_back_in_idle_locks_and_immobilises_again():
    # SPEC U-DATA-1: a board that restarted holds nothing the unit can trust; the state's outputs
    # go out again (doors locked, engine immobilised, the reader's pattern)
    car = Car(t=START - 60 * MIN)
    effects = car.send(UP)
    assert outputs(effects) == [Lock(), Immobiliser(True), ReaderLed("dark")]
    assert car.state == "idle"


def test_link_changes_are_reported_and_down_changes_no_output():
    # SPEC S-SYNC-4: the operator sees the board link go down and come back
    car = Car(t=START - 60 * MIN)
    effects = car.send(DOWN)
    assert outputs(effects) == []
    assert car.state == "idle"
    car.send(UP)
    reports = car.reports("board_link")
    assert [(r["up"], r["reason"]) for r in reports] == [
        (False, "no heartbeat answer"),
        (True, "reconnected"),
    ]
    assert reports[1]["board"] == {"name": "pico", "reset_cause": "watchdog"}


def test_link_back_never_locks_or_immobilises_a_running_engine():
    # SPEC X-SAFE-1: the re-applied lock and immobiliser wait for the engine to stop
    car = Car(t=START - 60 * MIN)
    car.engine(True)
    effects = car.send(UP)
    assert outputs(effects) == [ReaderLed("dark")]
    effects = car.engine(False)
    assert Lock() in effects and Immobiliser(True) in effects


def test_link_back_during_the_trip_releases_the_immobiliser_and_leaves_the_doors():
    # SPEC U-USE-1: during the trip the doors are the driver's business; U-SEC-5: the engine may run
    car = Car()
    car.drive_off()
    effects = car.send(UP)
    assert outputs(effects) == [Immobiliser(False), ReaderLed("dark")]
    assert car.state == "in_use"


def test_a_lock_missed_while_the_link_was_down_goes_out_when_it_is_back():
    # SPEC U-SEC-1 through a cable fault: the security lock fell due while the board could not
    # hear it; when the link is back the unit locks the doors
    car = Car()
    car.start_by_card()
    car.send(DOWN)
    car.advance(1 * MIN)
    assert car.state == "security_locked"
    effects = car.send(UP)
    assert Lock() in effects and Immobiliser(True) in effects
    assert Unlock() not in effects  # SPEC X-SAFE-2: nothing unlocks because a link came back


def test_link_back_unlocks_only_where_a_valid_tap_already_unlocked():
    # SPEC X-SAFE-2: a link coming back repeats the unlock of the `unlocked` state (a valid tap
    # opened it) and unlocks nothing anywhere else
    car = Car()
    car.send(UP)
    assert Unlock() not in car.effects  # idle
    car.start_by_card()
    assert Unlock() in car.send(UP)  # unlocked by Alice's tap: the doors stay open for her
    car.open_door()
    car.take_key()
    car.close_door()
    assert Unlock() not in car.send(UP)  # in use
    car.park()
    car.tap(ALICE)  # she ends the trip
    assert car.state == "forgotten_item_window"
    assert Unlock() not in car.send(UP)

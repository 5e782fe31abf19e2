"""The runner: restore before input, one result per command, bad input refused
(SPEC U-DATA-1, S-SYNC-3, X-SEC-3)."""

from __future__ import annotations

import threading

import pytest

from firmware.clock import ManualClock
from firmware.config import TripConfig
from firmware.effects import CommandResult, Immobiliser, Lock, ReaderLed, Unlock
from firmware.fakes import FakeBody, FakeCloudLink, FakeReader, MemoryStore
from firmware.inputs import BookingsChanged, CardTapped, DoorChanged, KeyChanged, RemoteCommand
from firmware.runner import Runner
from firmware.store import SqliteStore
from firmware.tests.harness import ALICE, KEY, MIN, START, Car, bookings


def test_restart_restores_state_and_deadlines_and_reapplies_outputs_before_input():
    # SPEC U-DATA-1
    car = Car()
    car.start_by_card()
    car.open_door()
    deadlines = car.runner.core.deadlines.to_dict()  # type: ignore[union-attr]
    assert "key" in deadlines
    restarted = car.restart()
    assert restarted.state == "unlocked"
    assert restarted.runner.core.deadlines.to_dict() == deadlines  # type: ignore[union-attr]
    # before any input, the new body was told what the state implies
    assert restarted.body.applied[:2] == [Unlock(), Immobiliser(True)]
    assert restarted.doors == "unlocked"
    # and the timers resume where they were: the key timer still fires at unlock+10:00
    restarted.at(START + 10 * MIN - 1)
    assert restarted.state == "unlocked"
    restarted.at(START + 10 * MIN)
    assert restarted.state == "security_locked"


def test_deadlines_that_fell_due_while_the_unit_was_off_fire_before_outputs_are_reapplied():
    # SPEC U-DATA-1, U-SEC-1: no unlock pulse for a state that already timed out
    car = Car()
    car.start_by_card()
    car.clock.set(START + 5 * MIN)  # power off through the door timer
    restarted = car.restart()
    assert restarted.state == "security_locked"
    assert Unlock() not in restarted.body.applied
    assert Lock() in restarted.body.applied


def test_restart_in_use_releases_the_immobiliser_and_leaves_the_doors_alone():
    # SPEC U-DATA-1, U-USE-1
    car = Car()
    car.drive_off()
    restarted = car.restart()
    assert restarted.state == "in_use"
    assert Immobiliser(False) in restarted.body.applied
    assert not any(isinstance(e, Lock | Unlock) for e in restarted.body.applied)


def test_restart_on_a_real_database_keeps_state_bookings_and_outbox(tmp_path):
    # SPEC U-DATA-1
    def runner(store: SqliteStore, body: FakeBody) -> Runner:
        r = Runner(
            TripConfig(), KEY, store, body, FakeReader(), FakeCloudLink(), ManualClock(START)
        )
        r.start()
        return r

    path = tmp_path / "unit.db"
    store = SqliteStore(path)
    first = runner(store, FakeBody())
    first.step(BookingsChanged(bookings()))
    first.step(CardTapped(ALICE))
    first.step(DoorChanged("driver", True))
    first.step(KeyChanged(False, "lend"))
    pending = [(e.seq, e.type) for e in store.pending()]
    store.close()

    store = SqliteStore(path)
    body = FakeBody()
    second = runner(store, body)
    assert second.core is not None and second.core.state == "in_use"
    assert second.core.bookings == bookings()
    assert [(e.seq, e.type) for e in store.pending()] == pending
    assert pending == [(1, "trip_started"), (2, "key_taken")]
    assert body.car.immobilised is False


def test_a_command_delivered_twice_is_applied_once():
    # SPEC S-SYNC-3: exactly one result per command
    car = Car()
    car.at(START)
    command = RemoteCommand("c-42", "start", {"reservation_id": "r1"})
    first = car.send(command)
    second = car.send(command)
    assert next(e for e in first if isinstance(e, CommandResult)).ok
    assert second == []
    assert len(car.reports("command_result")) == 1
    assert len(car.reports("trip_started")) == 1


def test_an_unknown_command_gets_a_result_that_says_so():
    # SPEC S-SYNC-3, X-SEC-3
    car = Car()
    result = car.command("self_destruct")
    assert (result.ok, result.code) == (False, "unknown_command")


@pytest.mark.parametrize(
    "event",
    [CardTapped(b"\x01\x02"), DoorChanged("sunroof", True), KeyChanged(False, "sideways")],
)
def test_malformed_input_is_refused_and_the_state_kept(event, caplog):
    # SPEC X-SEC-3
    car = Car()
    car.start_by_card()
    before = car.runner.core.snapshot()  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        car.send(event)
    assert car.runner.core.snapshot() == before  # type: ignore[union-attr]
    assert "refused input" in caplog.text
    car.open_door()  # and it keeps running
    assert car.state == "unlocked"


def test_the_runner_thread_takes_posted_inputs_in_order_and_answers_submissions():
    # the one event queue: adapters post from their threads, the runner is the only writer
    store = MemoryStore()
    store.bookings = bookings()
    reader, body = FakeReader(), FakeBody()
    clock = ManualClock(START)
    runner = Runner(TripConfig(), KEY, store, body, reader, FakeCloudLink(), clock)
    runner.start()
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        reader.tap(ALICE)
        body.input(DoorChanged("driver", True))
        effects = runner.submit(KeyChanged(False, "lend")).result(5)
        assert Immobiliser(False) in effects
        state = runner.submit(lambda: runner.core.state).result(5)  # type: ignore[union-attr]
        assert state == "in_use"
        assert ReaderLed("red_solid") in body.applied
    finally:
        runner.stop()
        thread.join(5)
    assert not thread.is_alive()

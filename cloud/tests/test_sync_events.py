"""Car events into the cloud (SPEC S-SYNC-2, S-SYNC-4), on SQLite and PostgreSQL: each event
applied once by its id, in the car's order, into trips, invoices, penalties, cards, mails and
command results; malformed or misaddressed messages refused with a log line, nothing applied.

The store-level tests call `Store.ingest_events` as a worker does; the others go through a real
Mosquitto with cars on their own accounts and one or two cloud workers on the shared
subscription.
"""

# ruff: noqa: F811 (the fixtures imported from test_sync_support are parameters here)
from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cloud.store import NotFound, Store
from cloud.store.sync import EventIn
from cloud.sync import CloudSync
from cloud.sync.events import EventApplier
from cloud.tests.test_sync_support import (  # noqa: F401 (fixtures)
    ALICE,
    BOB,
    MEMBER,
    NEW_CARD,
    POLICY,
    UNKNOWN_CAR,
    SimCar,
    Workers,
    at,
    broker,
    cars,
    fleet,
    start_sync,
    sync,
    wait_until,
)
from protocol import messages


@pytest.fixture
def booked(fleet: Store) -> str:
    """Alice's reservation of car-1, tomorrow 10:00-12:00 JST; the car reports its odometer."""
    fleet.set_car_state("car-1", at(24, 9).timestamp(), {"sensors": {"odometer_km": 12300.0}})
    r = fleet.create_reservation(
        car_id="car-1", driver_id=ALICE, start=at(24, 10), end=at(24, 12), buffer_minutes=30
    )
    return r.reservation_id


def ev(seq: int, type: str, data: dict[str, Any], when: dt.datetime, eid: str = "") -> EventIn:
    return EventIn(eid or uuid.uuid4().hex, seq, type, when.timestamp(), data)


def started(seq: int, rid: str, when: dt.datetime | None = None) -> EventIn:
    when = when or at(24, 9, 50)
    data = {"from": "idle", "to": "unlocked", "reservation_id": rid, "driver_id": ALICE,
            "by": "card", "at": when.timestamp(), "state": "unlocked"}  # fmt: skip
    return ev(seq, "trip_started", data, when)


def ended(seq: int, rid: str, when: dt.datetime | None = None) -> EventIn:
    when = when or at(24, 12, 40)
    data = {"from": "in_use", "to": "forgotten_item_window", "reservation_id": rid,
            "driver_id": ALICE, "by": "card", "started_at": at(24, 9, 50).timestamp(),
            "ended_at": when.timestamp(), "overtime_s": 2400.0,
            "position": [35.0001, 139.0001], "odometer_km": 12345.6, "fuel_pct": 70.0,
            "warnings": [], "at": when.timestamp()}  # fmt: skip
    return ev(seq, "trip_ended", data, when)


def ingest(db: Store, car: str, *events: EventIn) -> list[str]:
    return db.ingest_events(car, list(events), EventApplier(db, POLICY))


# ---- applied once, in order (store level) -------------------------------------------------------


def test_a_reported_trip_becomes_a_trip_an_invoice_a_penalty_and_one_mail(
    fleet: Store, booked: str
) -> None:
    # SPEC S-SYNC-2, U-END-3, F-TIME-1, F-DIST-1, F-OVER-1, C-PEN-1, N-MAIL-1
    assert ingest(fleet, "car-1", started(1, booked)) == ["applied: trip started"]
    trip = fleet.get_trip(booked)
    assert (trip.started_at, trip.started_by, trip.odometer_start_km) == (
        at(24, 9, 50), "card", 12300.0,
    )  # fmt: skip
    assert fleet.list_notifications(kind="trip_ended") == []  # not before the car says so
    [outcome] = ingest(fleet, "car-1", ended(2, booked))
    assert outcome == "applied: trip ended, invoice 6000 yen, unauthorised extension"
    trip = fleet.get_trip(booked)
    assert trip.ended_at == at(24, 12, 40)
    assert (trip.overtime_minutes, trip.unauthorised_extension) == (40, True)
    assert (trip.odometer_end_km, trip.fuel_end_pct, trip.lat_end) == (12345.6, 70.0, 35.0001)
    assert fleet.get_reservation(booked).status == "completed"
    [invoice] = fleet.list_invoices(MEMBER)
    assert [(line["code"], line["yen"]) for line in invoice.lines] == [
        ("time", 1200),  # 2 h: 8 × 150
        ("distance", 900),  # 45.6 km, part km not charged: 45 × 20
        ("overtime", 900),  # 40 min → 3 units: 450 × 200 %
        ("penalty", 3000),  # the unauthorised extension
    ]
    assert fleet.unauthorised_extensions(MEMBER) == (at(24, 12),)
    [mail] = fleet.list_notifications(kind="trip_ended")
    assert (mail.driver_id, mail.reservation_id) == (ALICE, booked)
    assert [e.outcome for e in fleet.car_events("car-1")] == [
        "applied: trip started",
        "applied: trip ended, invoice 6000 yen, unauthorised extension",
    ]


def test_the_same_event_delivered_again_is_applied_once(fleet: Store, booked: str) -> None:
    # SPEC S-SYNC-2: none applied twice
    start, end = started(1, booked), ended(2, booked)
    assert ingest(fleet, "car-1", start, start) == ["applied: trip started", "duplicate"]
    assert ingest(fleet, "car-1", end) == [
        "applied: trip ended, invoice 6000 yen, unauthorised extension"
    ]
    assert ingest(fleet, "car-1", start, end) == ["duplicate", "duplicate"]
    assert len(fleet.list_invoices(MEMBER)) == 1
    assert len(fleet.list_notifications(kind="trip_ended")) == 1
    assert len(fleet.car_events("car-1")) == 2
    assert fleet.car_status("car-1").event_seq == 2


def test_events_out_of_order_wait_for_the_earlier_ones(fleet: Store, booked: str) -> None:
    # SPEC S-SYNC-2: applied in the car's order, whatever order they arrive in
    assert ingest(fleet, "car-1", ended(2, booked)) == ["parked"]
    assert fleet.get_reservation(booked).status == "reserved"  # nothing applied yet
    assert fleet.list_notifications(kind="trip_ended") == []
    assert ingest(fleet, "car-1", started(1, booked)) == ["applied: trip started"]
    assert fleet.get_reservation(booked).status == "completed"
    [parked] = [e for e in fleet.car_events("car-1") if e.seq == 2]
    assert parked.outcome == "applied: trip ended, invoice 6000 yen, unauthorised extension"
    assert fleet.car_status("car-1").event_seq == 2


def test_a_missing_event_is_waited_for_then_given_up_with_a_log_line(
    fleet: Store, booked: str, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # SPEC S-SYNC-2: a gap holds later events back for a while, never for ever
    applier = EventApplier(fleet, POLICY)
    key = ev(1, "key_taken", {"from": "unlocked", "to": "in_use"}, at(24, 9, 55))
    assert fleet.ingest_events("car-1", [key], applier) == ["kept"]
    # seq 2 (trip_started) is lost somewhere; seq 3 arrives
    assert fleet.ingest_events("car-1", [ended(3, booked)], applier) == ["parked"]
    assert fleet.release_parked(applier, waited=dt.timedelta(seconds=30)) == []
    clock.advance(seconds=31)
    with caplog.at_level(logging.ERROR):
        assert fleet.release_parked(applier, waited=dt.timedelta(seconds=30)) == ["car-1"]
    assert "car car-1: events 2..2 never arrived; applying from 3 on" in caplog.text
    # the end carries the start: the trip is whole, billed once
    assert fleet.get_trip(booked).started_at == at(24, 9, 50)
    assert fleet.get_reservation(booked).status == "completed"
    # the lost start turns up after all: kept, nothing applied twice
    assert fleet.ingest_events("car-1", [started(2, booked)], applier) == [
        "ignored: the trip had already started"
    ]
    assert len(fleet.list_invoices(MEMBER)) == 1


def test_an_event_about_another_cars_reservation_is_refused_and_the_car_goes_on(
    fleet: Store, booked: str
) -> None:
    # SPEC S-SYNC-2, X-SEC-3: the car that sent it must be the reservation's
    [outcome] = ingest(fleet, "car-2", started(1, booked))
    assert outcome.startswith("refused: data.reservation_id: reservation")
    assert "is of car car-1, not of car-2" in outcome
    assert fleet.get_reservation(booked).status == "reserved"
    # a refused event is kept (for the operator) and does not block the car's next ones
    bob = fleet.create_reservation(
        car_id="car-2", driver_id=BOB, start=at(24, 13), end=at(24, 14), buffer_minutes=30
    )
    [next_one] = ingest(fleet, "car-2", started(2, bob.reservation_id))
    assert next_one == "applied: trip started"


def test_a_command_result_is_not_held_back_by_a_missing_event(fleet: Store) -> None:
    # SPEC S-SYNC-3: a caller waits for it
    fleet.add_command("c1", "car-1", "reunlock", {}, issued_at=1.0, expires_at=11.0)
    result = {"command_id": "c1", "ok": True, "code": "unlocked", "name": "reunlock"}
    outcome = ingest(fleet, "car-1", ev(5, "command_result", result, at(24, 10)))
    assert outcome == ["applied: command result (answered)"]
    assert fleet.get_command("c1").result == result
    # another car cannot answer it
    [wrong] = ingest(fleet, "car-2", ev(1, "command_result", result, at(24, 10)))
    assert wrong == "refused: data.command_id: no command c1 of car car-2"


def test_a_card_registered_in_the_car_is_the_drivers_card_and_goes_to_its_cars(
    fleet: Store, booked: str
) -> None:
    # SPEC U-CARD-2, U-CARD-4, S-SYNC-1, N-MAIL-1
    before = fleet.car_status("car-1").change_seq
    data = {"driver_id": ALICE, "reservation_id": booked, "card": NEW_CARD, "strong": True}
    assert ingest(fleet, "car-1", ev(1, "card_registered", data, at(24, 10))) == [
        "applied: card registered (strong)"
    ]
    card = fleet.get_card(NEW_CARD)
    assert (card.driver_id, card.strong, card.active) == (ALICE, True, True)
    assert fleet.car_status("car-1").change_seq > before  # a new snapshot is due
    assert "car-1" in fleet.cars_to_publish()
    assert [n.card_hash for n in fleet.list_notifications(kind="card_registered")][-1] == NEW_CARD
    # the same card reported for Bob: refused, still Alice's
    bob = {**data, "driver_id": BOB}
    [outcome] = ingest(fleet, "car-1", ev(2, "card_registered", bob, at(24, 10)))
    assert outcome.startswith("refused: data.driver_id: reservation")


def test_an_unknown_car_is_refused_and_nothing_kept(fleet: Store) -> None:
    # SPEC X-SEC-3
    with pytest.raises(NotFound, match="car 'car-9'"):
        ingest(fleet, UNKNOWN_CAR, ev(1, "key_taken", {}, at(24, 10)))
    assert fleet.car_events() == []


def test_two_workers_ingesting_the_same_events_at_once_apply_each_once(
    fleet: Store, booked: str, start_sync: Workers
) -> None:
    # SPEC S-SYNC-2: several cloud workers on one database
    events = [started(1, booked)] + [
        ev(i, "key_returned" if i % 2 else "key_taken", {}, at(24, 10, i)) for i in range(2, 40)
    ]
    events.append(ended(40, booked))
    stores = [start_sync.store(), start_sync.store()]
    errors: list[BaseException] = []

    def work(store: Store, order: list[EventIn]) -> None:
        try:
            for e in order:
                ingest(store, "car-1", e)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(stores[0], events)),
        threading.Thread(target=work, args=(stores[1], list(reversed(events)))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    kept = fleet.car_events("car-1")
    assert [e.seq for e in kept] == list(range(1, 41))
    assert all(e.applied_at is not None for e in kept)
    assert len(fleet.list_invoices(MEMBER)) == 1
    assert len(fleet.list_notifications(kind="trip_ended")) == 1
    assert fleet.car_status("car-1").event_seq == 40


def test_the_last_state_and_presence_of_a_car_are_kept(fleet: Store) -> None:
    # SPEC S-SYNC-4: the newest report stands, whatever order they come in
    assert fleet.set_car_state("car-1", 200.0, {"trip": "in_use", "fuel_pct": 60})
    assert not fleet.set_car_state("car-1", 100.0, {"trip": "idle"})
    status = fleet.car_status("car-1")
    assert (status.state, status.state_at) == ({"trip": "in_use", "fuel_pct": 60}, 200.0)
    assert fleet.set_car_online("car-1", True, 150.0)
    assert fleet.set_car_online("car-1", False, None)  # its last will
    assert not fleet.set_car_online("car-1", True, 150.0)  # the old "online" again
    assert fleet.car_status("car-1").online is False
    with pytest.raises(NotFound):
        fleet.set_car_state(UNKNOWN_CAR, 1.0, {})


# ---- over MQTT ----------------------------------------------------------------------------------


def test_events_delivered_twice_to_two_workers_are_applied_once(
    fleet: Store, booked: str, start_sync: Workers, cars: Callable[..., SimCar]
) -> None:
    # SPEC S-SYNC-2: the shared subscription splits the stream; duplicates change nothing
    workers = [start_sync(), start_sync()]
    car = cars("car-1")
    events = [started(1, booked)] + [
        ev(i, "key_returned" if i % 2 else "key_taken", {}, at(24, 10, i)) for i in range(2, 30)
    ]
    events.append(ended(30, booked))
    for e in events:
        message = messages.Event(e.event_id, "car-1", e.seq, e.type, e.at, e.data)
        car.send_event(message)
        car.send_event(message)  # as a car that lost the PUBACK sends it again
    wait_until(lambda: fleet.car_status("car-1").event_seq == 30, 5.0, "all 30 events")
    wait_until(lambda: sum(w.stats.duplicates for w in workers) == 30, 5.0, "30 duplicates")
    assert all(w.stats.received > 0 for w in workers)  # both workers had a share
    assert sum(w.stats.received for w in workers) == 60
    assert len(fleet.car_events("car-1")) == 30
    assert len(fleet.list_invoices(MEMBER)) == 1
    assert len(fleet.list_notifications(kind="trip_ended")) == 1


def test_malformed_or_misaddressed_messages_are_refused_with_a_log_line(
    fleet: Store,
    sync: CloudSync,
    cars: Callable[..., SimCar],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # SPEC X-SEC-3, S-SYNC-2: nothing applied, the reason named, and the sync goes on
    car, stranger = cars("car-1"), cars(UNKNOWN_CAR)
    good = messages.Event("e-ok", "car-1", 1, "key_taken", 1795000000.0, {}).to_body()
    bad = [
        (b"not json", "payload: not UTF-8 JSON"),
        (b"[1, 2]", "payload: expected a JSON object, got list"),
        (messages.encode({**good, "v": 2}), "v: protocol version 2"),
        (messages.encode({k: v for k, v in good.items() if k != "seq"}), "seq: missing"),
        (messages.encode({**good, "seq": 0}), "seq: expected an integer ≥ 1"),
        (messages.encode({**good, "car_id": "car-2"}), "car_id: the payload says 'car-2'"),
    ]
    with caplog.at_level(logging.WARNING, logger="cloud.sync"):
        for payload, _ in bad:
            car.publish("events", payload)
        car.publish("state", messages.encode({"v": 1, "car_id": "car-1", "at": 5.0}))
        stranger.event("key_taken", {})
        wait_until(lambda: sync.stats.refused == len(bad) + 2, 3.0, "every refusal")
    for _, reason in bad:
        assert f"refused a message on kagi/v1/cars/car-1/events: {reason}" in caplog.text
    assert "refused a message on kagi/v1/cars/car-1/state: state: missing" in caplog.text
    assert "kagi/v1/cars/car-9/events: car 'car-9' does not exist" in caplog.text
    assert fleet.car_events() == []
    assert fleet.car_status("car-1").state is None
    car.publish("events", messages.encode(good))
    wait_until(lambda: fleet.car_events("car-1"), 3.0, "the good event")
    assert [e.event_id for e in fleet.car_events()] == ["e-ok"]


def test_state_and_presence_are_kept_also_from_retained_reports(
    fleet: Store, start_sync: Workers, cars: Callable[..., SimCar]
) -> None:
    # SPEC S-SYNC-4: a worker that starts later still learns every car's last state
    car = cars("car-2")
    state = messages.State("car-2", 1795000000.0, {"trip": "idle", "odometer_km": 1000.0})
    car.publish("state", messages.encode(state.to_body()), retain=True)
    car.publish("online", messages.encode(messages.Online("car-2", True, 1795000000.0).to_body()),
                retain=True)  # fmt: skip
    start_sync(fleet)
    wait_until(lambda: fleet.car_status("car-2").online, 3.0, "presence")
    status = fleet.car_status("car-2")
    assert status.state == {"trip": "idle", "odometer_km": 1000.0}
    assert status.online is True


def test_several_cars_events_go_in_one_transaction_and_an_unknown_car_is_refused_alone(
    fleet: Store, booked: str
) -> None:
    # SPEC S-SYNC-2: a worker applies a round of many cars at once (the reconnect storm)
    key = ev(2, "key_taken", {"from": "unlocked", "to": "in_use"}, at(24, 9, 55))
    other = ev(1, "card_denied", {"card": "ab" * 32, "reason": "no_reservation"}, at(24, 9))
    result = fleet.ingest_many(
        {
            "car-1": [started(1, booked), key, ended(3, booked)],
            UNKNOWN_CAR: [ev(1, "key_taken", {}, at(24, 9))],
            "car-2": [other],
        },
        EventApplier(fleet, POLICY),
    )
    car1 = result["car-1"]
    assert isinstance(car1, list)
    start, kept, end = car1
    assert (start, kept) == ("applied: trip started", "kept")
    assert end.startswith("applied: trip ended, invoice")
    assert isinstance(result[UNKNOWN_CAR], NotFound)
    assert result["car-2"] == ["kept"]
    # each outcome is recorded with its event, and each car's cursor moved
    recorded = {e.seq: e.outcome for e in fleet.car_events("car-1")}
    assert recorded == dict(enumerate(car1, start=1))
    assert all(e.applied_at is not None for e in fleet.car_events())
    assert fleet.car_status("car-1").event_seq == 3
    assert fleet.car_status("car-2").event_seq == 1
    assert len(fleet.list_invoices(MEMBER)) == 1


def test_a_command_result_ahead_of_a_gap_is_applied_once_when_the_gap_fills(
    fleet: Store,
) -> None:
    # SPEC S-SYNC-3: applied at once, and not again when the walk reaches its place
    now = at(24, 9).timestamp()
    fleet.add_command("c-1", "car-1", "locate", {}, issued_at=now, expires_at=now + 60)
    result = {"command_id": "c-1", "ok": True, "code": "ok"}
    outcomes = ingest(
        fleet,
        "car-1",
        ev(2, "command_result", result, at(24, 9, 1)),
        ev(1, "key_taken", {"from": "unlocked", "to": "in_use"}, at(24, 9)),
    )
    assert outcomes == ["applied: command result (answered)", "kept"]
    recorded = {e.seq: e.outcome for e in fleet.car_events("car-1")}
    assert recorded == {1: "kept", 2: "applied: command result (answered)"}
    assert fleet.car_status("car-1").event_seq == 2

"""The cloud's sync with the cars over a real Mosquitto, on SQLite and PostgreSQL: snapshots
reach the car signed within a second of every change that concerns it, in version order; remote
operations come back with their one result or time out.

The cars are real MQTT clients on their own broker accounts that verify everything with the
cloud's public key (`kagi cloud public-key`), as the car unit does.
"""

# ruff: noqa: F811 (the fixtures imported from test_sync_support are parameters here)
from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.auth import hash_password
from cloud.mosquitto import CLOUD_USER, Mosquitto
from cloud.server import ApiThread
from cloud.service import Cloud, Refused
from cloud.store import Store, open_store
from cloud.sync import CloudSync, SyncConfig, public_key
from cloud.tests.test_sync_support import (  # noqa: F401 (fixtures)
    ALICE,
    ALICE_CARD,
    ALICE_STRONG,
    BOB,
    BOB_CARD,
    CLOUD_PASSWORD,
    NEW_CARD,
    POLICY,
    SimCar,
    Workers,
    at,
    broker,
    caller,
    cars,
    cloud,
    fleet,
    start_sync,
    sync,
    wait_until,
)
from protocol import messages, signing, topics
from tools.cli import main

PASSWORD = "correct horse battery"


def has_reservation(rid: str) -> Callable[[dict[str, Any]], bool]:
    return lambda b: any(r["id"] == rid for r in b["reservations"])


def driver_in(bookings: dict[str, Any], driver_id: str) -> dict[str, Any] | None:
    return next((d for d in bookings["drivers"] if d["id"] == driver_id), None)


# ---- snapshots (S-SYNC-1) -----------------------------------------------------------------------


def test_a_reservation_made_through_the_api_reaches_the_car_signed_within_a_second(
    fleet: Store, sync: CloudSync, cars: Callable[..., SimCar], clock: Any
) -> None:
    # SPEC S-SYNC-1, X-SEC-1, U-LIC-1
    fleet.set_password_hash(ALICE, hash_password(PASSWORD))
    car = cars("car-1")
    with ApiThread(fleet, POLICY, clock, cars=sync) as api:
        http = httpx.Client(base_url=api.url, timeout=10)
        token = http.post("/v1/login", json={"account_id": ALICE, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        sent = time.monotonic()
        r = http.post(
            "/v1/reservations",
            headers=headers,
            json={
                "car_id": "car-1",
                "start": at(24, 10).isoformat(),
                "end": at(24, 12).isoformat(),
            },
        )
        assert r.status_code == 201, r.text
    rid = r.json()["id"]
    got = car.wait_snapshot(has_reservation(rid))
    assert got.at - sent < 1.0
    bookings = got.body.bookings
    assert bookings["reservations"] == [
        {"id": rid, "driver_id": ALICE, "start": at(24, 10).timestamp(),
         "end": at(24, 12).timestamp()}
    ]  # fmt: skip
    assert driver_in(bookings, ALICE) == {
        "id": ALICE,
        "licence_expiry": "2030-01-01",
        "cards": sorted([ALICE_CARD, ALICE_STRONG]),
        "strong_cards": [ALICE_STRONG],
    }
    assert driver_in(bookings, BOB) is None  # only the drivers the car needs
    assert car.refused == []
    # the other car's own snapshot never carries it
    other = cars("car-2")
    wait_until(lambda: other.snapshots, 2.0, "car-2's snapshot")
    assert not any(has_reservation(rid)(r.body.bookings) for r in other.snapshots)


def test_a_snapshot_that_does_not_verify_is_what_the_car_refuses(
    fleet: Store, sync: CloudSync, cars: Callable[..., SimCar], cloud: Cloud
) -> None:
    # SPEC X-SEC-1: the snapshot is signed with the cloud's key; another key does not verify it
    stranger = SimCar(
        cars("car-1").broker, "car-1", signing.public_key_hex(signing.new_private_key())
    ).connect()
    try:
        view = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12))
        wait_until(lambda: stranger.refused, 2.0, "the stranger's refusal")
        assert "does not verify" in stranger.refused[0]
        assert stranger.snapshots == []
    finally:
        stranger.close()
    assert view.reservation.car_id == "car-1"


def test_cancellation_change_and_extension_reach_the_car_within_a_second(
    fleet: Store, cars: Callable[..., SimCar], cloud: Cloud, clock: Any
) -> None:
    # SPEC S-SYNC-1, U-USE-3
    car = cars("car-1")
    first = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation
    second = cloud.reserve(caller(BOB), "car-1", at(25, 10), at(25, 12)).reservation
    car.wait_snapshot(has_reservation(second.reservation_id))

    sent = time.monotonic()
    cloud.change(caller(), first.reservation_id, at(24, 9), at(24, 11))
    moved = car.wait_snapshot(
        lambda b: any(r["start"] == at(24, 9).timestamp() for r in b["reservations"])
    )
    assert moved.at - sent < 1.0

    fee = cloud.cancellation(caller(BOB), second.reservation_id).fee
    assert fee is not None
    sent = time.monotonic()
    cloud.cancel(caller(BOB), second.reservation_id, fee)
    gone = car.wait_snapshot(
        lambda b: not has_reservation(second.reservation_id)(b) and driver_in(b, BOB) is None
    )
    assert gone.at - sent < 1.0

    # the trip starts (the car reports it), then the driver extends it from the phone
    fleet.start_trip(first.reservation_id, started_at=at(24, 9))
    clock.now = at(24, 10, 30).astimezone(dt.UTC)
    sent = time.monotonic()
    cloud.extend(caller(), first.reservation_id)
    longer = car.wait_snapshot(
        lambda b: any(r["end"] == at(24, 11, 15).timestamp() for r in b["reservations"])
    )
    assert longer.at - sent < 1.0
    versions = [r.body.version for r in car.snapshots]
    assert versions == sorted(set(versions))  # each newer than the one before


def test_a_card_revoked_or_registered_elsewhere_reaches_the_car_within_a_second(
    fleet: Store, cars: Callable[..., SimCar], cloud: Cloud
) -> None:
    # SPEC S-SYNC-1, U-CARD-4: the operator's CLI writes through another connection (another
    # process); the store's triggers tell the running sync
    car = cars("car-1")
    rid = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation.reservation_id
    car.wait_snapshot(has_reservation(rid))
    with open_store(fleet.url, migrate=False) as operator:
        sent = time.monotonic()
        operator.revoke_card(ALICE_CARD)
        revoked = car.wait_snapshot(
            lambda b: ALICE_CARD not in (driver_in(b, ALICE) or {"cards": [ALICE_CARD]})["cards"]
        )
        assert revoked.at - sent < 1.0
        assert driver_in(revoked.body.bookings, ALICE)["cards"] == [ALICE_STRONG]  # type: ignore[index]

        sent = time.monotonic()
        operator.add_card(ALICE, NEW_CARD, strong=True)
        added = car.wait_snapshot(
            lambda b: NEW_CARD in (driver_in(b, ALICE) or {}).get("strong_cards", [])
        )
        assert added.at - sent < 1.0

        sent = time.monotonic()
        operator.update_driver(ALICE, licence_expiry=dt.date(2026, 11, 30))
        renewed = car.wait_snapshot(
            lambda b: (driver_in(b, ALICE) or {}).get("licence_expiry") == "2026-11-30"
        )
        assert renewed.at - sent < 1.0

        # a card of a driver with no reservation on the car: nothing to send
        before = len(car.snapshots)
        operator.revoke_card(BOB_CARD)
        time.sleep(0.3)
        assert len(car.snapshots) == before


def test_a_car_that_connects_later_gets_only_the_latest_snapshot(
    fleet: Store, cars: Callable[..., SimCar], cloud: Cloud
) -> None:
    # SPEC S-SYNC-1, S-SYNC-2: the snapshot is retained, so a car back from the garage gets it
    early = cars("car-1")
    a = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation.reservation_id
    b = cloud.reserve(caller(BOB), "car-1", at(25, 10), at(25, 12)).reservation.reservation_id
    last = early.wait_snapshot(lambda x: has_reservation(a)(x) and has_reservation(b)(x))
    late = cars("car-1")
    got = wait_until(lambda: late.snapshots, 2.0, "the retained snapshot")
    assert len(got) == 1
    assert got[0].body.version == last.body.version
    assert got[0].body.bookings == last.body.bookings


def test_the_window_carries_the_coming_days_and_every_trip_in_use(
    fleet: Store, sync: CloudSync, cars: Callable[..., SimCar], clock: Any
) -> None:
    # SPEC S-SYNC-1: "for the coming days" (configurable; default from a day back to 14 ahead)
    car = cars("car-1")
    far = fleet.create_reservation(
        car_id="car-1", driver_id=ALICE, start=at(23, 18) + dt.timedelta(days=20),
        end=at(23, 20) + dt.timedelta(days=20), buffer_minutes=30,
    )  # fmt: skip
    near = fleet.create_reservation(
        car_id="car-1", driver_id=BOB, start=at(24, 10), end=at(24, 12), buffer_minutes=30
    )
    snap = car.wait_snapshot(has_reservation(near.reservation_id))
    assert not has_reservation(far.reservation_id)(snap.body.bookings)
    # the days pass: the refresh brings the far one in, and drops the one long over
    fleet.start_trip(near.reservation_id, started_at=at(24, 10))
    clock.now += dt.timedelta(days=10)
    sync.publish("car-1", refresh=True)
    moved = car.wait_snapshot(has_reservation(far.reservation_id))
    # a trip still in use (long overdue) stays: the car must be able to end it
    assert has_reservation(near.reservation_id)(moved.body.bookings)


def test_versions_reach_the_car_in_order_whatever_the_number_of_workers(
    fleet: Store, start_sync: Workers, cars: Callable[..., SimCar]
) -> None:
    # SPEC S-SYNC-1: a stale version is never published after a newer one (else the retained
    # snapshot, what a car gets when it comes back, could be an old one)
    workers = [start_sync(), start_sync()]
    car = cars("car-1")
    made: list[str] = []

    def book(store: Store, driver: str, day: int) -> None:
        for hour in range(0, 22, 3):
            r = store.create_reservation(
                car_id="car-1", driver_id=driver, start=at(day, hour),
                end=at(day, hour + 1), buffer_minutes=30,
            )  # fmt: skip
            made.append(r.reservation_id)
            for w in workers:
                w.changed("car-1")

    threads = [
        threading.Thread(target=book, args=(start_sync.store(), ALICE, 25)),
        threading.Thread(target=book, args=(start_sync.store(), BOB, 26)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = car.wait_snapshot(lambda b: len(b["reservations"]) == len(made), 3.0)
    versions = [r.body.version for r in car.snapshots]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert car.snapshots[-1] is final
    late = cars("car-1")
    retained = wait_until(lambda: late.snapshots, 2.0, "the retained snapshot")[0]
    assert retained.body.version == final.body.version


def test_a_new_cloud_worker_republishes_every_car(
    fleet: Store, broker: Mosquitto, start_sync: Workers
) -> None:
    # SPEC S-SYNC-1: a broker that lost its retained messages (restart without persistence) is
    # refilled by the next cloud that connects without a session
    r = fleet.create_reservation(
        car_id="car-2", driver_id=BOB, start=at(24, 10), end=at(24, 12), buffer_minutes=30
    )
    start_sync(fleet)
    car = SimCar(broker, "car-2", public_key(fleet)).connect()
    try:
        car.wait_snapshot(has_reservation(r.reservation_id))
    finally:
        car.close()


def test_public_key_command_prints_the_key_the_snapshots_verify_with(
    tmp_path: Any, capsys: Any
) -> None:
    # SPEC X-SEC-1: the key a car unit is provisioned with; made once, then kept
    db = str(tmp_path / "cloud.db")
    assert main(["cloud", "init", "--db", db]) == 0
    capsys.readouterr()
    assert main(["cloud", "public-key", "--db", db]) == 0
    key = capsys.readouterr().out.strip()
    assert main(["cloud", "public-key", "--db", db]) == 0
    assert capsys.readouterr().out.strip() == key
    with open_store(db) as store:
        private = signing.private_key_from_hex(store.get_setting("sync.signing_key") or "")
    signed = signing.sign(private, "snapshot", {"car_id": "car-1"})
    assert signing.verify(signing.public_key_from_hex(key), signed, "snapshot")
    assert main(["cloud", "public-key", "--db", str(tmp_path / "none.db")]) == 2
    assert "no database here" in capsys.readouterr().err


# ---- remote operations (S-SYNC-3) ---------------------------------------------------------------


def test_a_remote_operation_returns_the_cars_one_result(
    fleet: Store, cars: Callable[..., SimCar], cloud: Cloud, clock: Any
) -> None:
    # SPEC S-SYNC-3, U-SEC-4, X-SEC-1: a signed command with id, issue time and expiry
    def reunlock(cmd: messages.Command) -> tuple[bool, str, dict[str, Any]]:
        return True, "unlocked", {"name": cmd.name, "state": "unlocked"}

    car = cars("car-1", answer=reunlock)
    rid = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation.reservation_id
    result = cloud.operate(caller(), rid, "reunlock")
    assert result["ok"] is True and result["code"] == "unlocked"
    assert result["data"] == {"name": "reunlock", "state": "unlocked"}
    [got] = car.commands
    cmd = got.body
    assert (cmd.name, cmd.car_id, cmd.args) == ("reunlock", "car-1", {"reservation_id": rid})
    assert cmd.issued_at == clock.now.timestamp()
    assert cmd.expires_at == cmd.issued_at + cloud.command_timeout
    record = fleet.get_command(cmd.id)
    assert record.status == "answered" and record.result is not None
    assert record.result["code"] == "unlocked"


def test_a_result_delivered_twice_is_one_result(
    fleet: Store, cars: Callable[..., SimCar], cloud: Cloud
) -> None:
    # SPEC S-SYNC-3: exactly one result per command, whatever the car or the broker repeats
    sent: list[messages.Event] = []

    def twice(cmd: messages.Command) -> None:
        data = {"command_id": cmd.id, "ok": True, "code": "unlocked", "state": "unlocked"}
        event = car.event("command_result", data, wait=False)
        car.send_event(event, wait=False)  # the same event again (a redelivery)
        car.event("command_result", {**data, "ok": False, "code": "second"}, wait=False)
        sent.append(event)
        return None

    car = cars("car-1", answer=twice)
    rid = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation.reservation_id
    result = cloud.operate(caller(), rid, "reunlock")
    assert (result["ok"], result["code"]) == (True, "unlocked")
    wait_until(lambda: len(fleet.car_events("car-1", "command_result")) == 2)
    results = fleet.car_events("car-1", "command_result")
    assert sorted(e.outcome or "" for e in results) == [
        "applied: command result (answered)",
        "applied: command result (duplicate)",
    ]
    assert fleet.get_command(car.commands[0].body.id).result["code"] == "unlocked"  # type: ignore[index]


def test_an_unanswered_operation_times_out_and_a_late_answer_changes_nothing(
    fleet: Store, cars: Callable[..., SimCar], cloud: Cloud
) -> None:
    # SPEC S-SYNC-3: the caller gets a 504 refusal; the command expired with it
    car = cars("car-1")  # hears the command, never answers
    cloud.command_timeout = 0.3
    rid = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation.reservation_id
    started = time.monotonic()
    with pytest.raises(Refused) as refused:
        cloud.operate(caller(), rid, "start")
    assert 0.3 <= time.monotonic() - started < 1.5
    assert (refused.value.status, refused.value.code) == (504, "car_timeout")
    [got] = car.commands
    assert got.body.expires_at == pytest.approx(got.body.issued_at + 0.3)
    assert fleet.get_command(got.body.id).status == "timed_out"
    car.event("command_result", {"command_id": got.body.id, "ok": True, "code": "started"})
    late = wait_until(lambda: fleet.get_command(got.body.id).result)
    assert late["code"] == "started"
    assert fleet.get_command(got.body.id).status == "timed_out"  # the caller's answer stands


def test_operations_are_refused_at_once_when_the_car_is_known_offline(
    fleet: Store, cars: Callable[..., SimCar], cloud: Cloud
) -> None:
    # SPEC S-SYNC-3, S-SYNC-4
    car = cars("car-1")
    rid = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation.reservation_id
    car.publish("online", messages.encode(messages.Online("car-1", False).to_body()), retain=True)
    wait_until(lambda: fleet.car_status("car-1").online is False)
    with pytest.raises(Refused) as refused:
        cloud.operate(caller(), rid, "reunlock")
    assert (refused.value.status, refused.value.code) == (503, "car_offline")
    assert car.commands == []


def test_operations_are_refused_when_the_broker_is_gone(
    fleet: Store, broker: Mosquitto, cloud: Cloud
) -> None:
    # SPEC S-SYNC-3: a clear 503, not a hang
    rid = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation.reservation_id
    broker.stop()
    sync = cloud.car_link
    assert isinstance(sync, CloudSync)
    wait_until(lambda: not sync.connected, 3.0, "the sync noticing")
    with pytest.raises(Refused) as refused:
        cloud.operate(caller(), rid, "reunlock")
    assert (refused.value.status, refused.value.code) == (503, "car_link_unavailable")


def test_cloud_account_sees_every_car_and_a_car_only_its_own(
    broker: Mosquitto, fleet: Store, cars: Callable[..., SimCar], cloud: Cloud
) -> None:
    # SPEC X-SEC-2 (as the sync relies on it): car-2 hears nothing of car-1's snapshot
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watch-car-2")
    watcher.username_pw_set("car-2", "pw-car-2")
    seen: list[str] = []
    watcher.on_message = lambda c, u, m: seen.append(m.topic)
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    watcher.subscribe(topics.fleet_filter("reservations"), 1)
    try:
        car = cars("car-1")
        rid = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12)).reservation.reservation_id
        car.wait_snapshot(has_reservation(rid))
        time.sleep(0.2)
        assert all(t == topics.topic("car-2", "reservations") for t in seen)
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert CLOUD_USER != "car-2" and CLOUD_PASSWORD


def test_the_sync_works_the_same_on_the_embedded_broker(fleet: Store, clock: Any) -> None:
    # SPEC S-SYNC-1, S-SYNC-2, S-SYNC-3 on the broker `kagi cloud serve` starts by itself
    from cloud.broker import EmbeddedBroker

    accounts = {CLOUD_USER: CLOUD_PASSWORD, "car-1": "pw-car-1", "car-2": "pw-car-2"}
    broker = EmbeddedBroker(accounts).start()
    try:
        config = SyncConfig(broker.url, password=CLOUD_PASSWORD, worker="embedded",
                            poll_interval=0.05)  # fmt: skip
        with CloudSync(fleet, POLICY, config, clock=clock) as sync:
            assert sync.wait_connected(5)
            cloud = Cloud(fleet, POLICY, clock, cars=sync, command_timeout=2.0)

            def answer(cmd: messages.Command) -> tuple[bool, str, dict[str, Any]]:
                return True, "unlocked", {"name": cmd.name}

            car = SimCar(broker, "car-1", public_key(fleet), answer=answer).connect()
            try:
                sent = time.monotonic()
                view = cloud.reserve(caller(), "car-1", at(24, 10), at(24, 12))
                rid = view.reservation.reservation_id
                assert car.wait_snapshot(has_reservation(rid)).at - sent < 1.0
                assert cloud.operate(caller(), rid, "reunlock")["code"] == "unlocked"
                car.event("trip_started", {"reservation_id": rid, "by": "card"})
                wait_until(lambda: fleet.get_reservation(rid).status == "in_use")
            finally:
                car.close()
    finally:
        broker.stop()

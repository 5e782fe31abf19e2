"""The car's MQTT link against real brokers (Mosquitto, and the embedded amqtt broker where it
applies): a car unit in this process (runner, SQLite store, the link; fake body and reader) and
the cloud as a real paho client that signs what it sends with the cloud's key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cloud.mosquitto import Mosquitto
from firmware.cloud_link import LinkSettings
from firmware.effects import Unlock
from firmware.inputs import (
    BrakeChanged,
    CardTapped,
    DoorChanged,
    EngineChanged,
    KeyChanged,
    PositionChanged,
    RemoteCommand,
    VehicleData,
)
from firmware.tests.cloud_side import (
    CLOUD_KEY,
    FAST,
    FORGER_KEY,
    CloudClient,
    LinkedCar,
    car_url,
    command_frame,
    first_arrivals,
    make_ca,
    restart,
    running,
    snapshot_frame,
    wait_for,
)
from firmware.tests.harness import ALICE, ALICE_ID, HOUR, MIN, START, bookings
from protocol import messages, signing, topics

CAR = "car-001"
RESERVATIONS = topics.topic(CAR, "reservations")
COMMANDS = topics.topic(CAR, "commands")
LOGGER = "firmware.cloud_link"


class Rig:
    def __init__(self, broker: Any, cloud: CloudClient, car: LinkedCar) -> None:
        self.broker, self.cloud, self.car = broker, cloud, car

    def snapshot(self, version: int, **kw: Any) -> dict[str, Any]:
        data = bookings(version, **kw).to_dict()
        self.cloud.snapshot(CAR, data, self.car.clock.now())
        return data

    def refused(self) -> int:
        return self.car.link.counts().get("refused", 0)


@pytest.fixture
def rig(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    kind = getattr(request, "param", "mosquitto")
    with running(kind) as b, CloudClient(b) as cloud:
        rig = Rig(b, cloud, LinkedCar(tmp_path, b, START - HOUR))
        try:
            wait_for(rig.car.connected, what="the car connects")
            yield rig
        finally:
            rig.car.close()  # the one a test may have put in its place


BOTH = pytest.mark.parametrize("rig", ["mosquitto", "embedded"], indirect=True)


def outbox_types(car: LinkedCar) -> list[str]:
    return [e.type for e in car.store.pending(1000)]


# ---- bookings in ---------------------------------------------------------------------------


@BOTH
def test_bookings_reach_the_car_within_a_second_and_decide_its_taps(rig: Rig) -> None:
    # SPEC S-SYNC-1, U-CARD-4, U-START-3: a reservation, its cancellation and a revoked card each
    # reach the car within a second of being published, and the car's next tap follows them.
    car = rig.car
    took = {}

    def publish(version: int, data: dict[str, Any]) -> None:
        t0 = time.monotonic()
        rig.cloud.snapshot(CAR, data, car.clock.now())
        wait_for(lambda: car.bookings_version() == version, 1.0, f"version {version}")
        took[version] = time.monotonic() - t0

    publish(1, bookings(1).to_dict())
    cancelled = bookings(2).to_dict()
    cancelled["reservations"] = [r for r in cancelled["reservations"] if r["id"] != "r1"]
    publish(2, cancelled)
    car.at(START)
    assert not any(isinstance(e, Unlock) for e in car.send(CardTapped(ALICE)))
    assert car.state == "idle"

    publish(3, bookings(3, alice_cards=()).to_dict())  # the card was reported lost
    assert not any(isinstance(e, Unlock) for e in car.send(CardTapped(ALICE)))
    assert car.state == "idle"

    publish(4, bookings(4).to_dict())
    assert any(isinstance(e, Unlock) for e in car.send(CardTapped(ALICE)))
    assert car.state == "unlocked"
    assert max(took.values()) < 1.0, took


def forged(data: dict[str, Any], now: float) -> bytes:
    return snapshot_frame(CAR, data, now, key=FORGER_KEY)


def altered(data: dict[str, Any], now: float) -> bytes:
    frame = json.loads(snapshot_frame(CAR, data, now))
    frame["body"]["bookings"]["reservations"][0]["end"] += 15 * MIN  # a free extension
    return json.dumps(frame).encode()


def unsigned(data: dict[str, Any], now: float) -> bytes:
    return messages.encode(messages.Snapshot(CAR, now, data).to_body())


def other_car(data: dict[str, Any], now: float) -> bytes:
    return snapshot_frame("car-002", data, now)


def command_as_snapshot(data: dict[str, Any], now: float) -> bytes:
    body = messages.Snapshot(CAR, now, data).to_body()
    return messages.encode(signing.sign(CLOUD_KEY, messages.Command.KIND, body))


def end_before_start(data: dict[str, Any], now: float) -> bytes:
    data["reservations"][0]["end"] = data["reservations"][0]["start"] - 1
    return snapshot_frame(CAR, data, now)


SNAPSHOT_CASES = {
    # name: (version of the bad snapshot, how it is made, what the log line says)
    "forged": (6, forged, "does not verify"),
    "altered": (6, altered, "does not verify"),
    "unsigned": (6, unsigned, "not a signed message"),
    "other_car": (6, other_car, "for car 'car-002'"),
    "kind_swapped": (6, command_as_snapshot, "kind: expected 'snapshot'"),
    "malformed": (6, end_before_start, "must be after start"),
    "stale": (4, lambda d, now: snapshot_frame(CAR, d, now), "stale"),
}


@pytest.mark.parametrize("case", SNAPSHOT_CASES)
def test_forged_altered_stale_and_misdirected_snapshots_are_refused(rig, caplog, case):
    # SPEC X-SEC-1, X-SEC-3: refused with a log line, never acted on
    caplog.set_level(logging.INFO, logger=LOGGER)
    car = rig.car
    held = rig.snapshot(5)
    wait_for(lambda: car.bookings_version() == 5)
    before = (car.store.load(), car.store.last_seq(), rig.refused())

    version, make, reason = SNAPSHOT_CASES[case]
    data = bookings(version, alice_end=START + 4 * HOUR).to_dict()  # what the sender wants
    rig.cloud.publish(RESERVATIONS, make(data, car.clock.now()), retain=True)

    wait_for(lambda: rig.refused() > before[2], what="the refusal")
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any(reason in line and RESERVATIONS in line for line in lines), lines
    assert car.query(lambda: car.runner.core.bookings.to_dict()) == held
    assert (car.store.load(), car.store.last_seq()) == before[:2]  # no change, no event


def test_the_retained_snapshot_again_after_a_reconnection_is_a_quiet_no_op(rig, caplog):
    # SPEC S-SYNC-1: on every connection the broker hands the car its retained snapshot again
    caplog.set_level(logging.INFO, logger=LOGGER)
    car = rig.car
    rig.snapshot(2)
    wait_for(lambda: car.bookings_version() == 2)
    car.close()
    rig.car = car = LinkedCar(car.store.path.parent, rig.broker, car.clock.now())
    wait_for(lambda: rig.refused() == 1, what="the retained copy")
    assert any("version 2 is held already" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "refused" in r.msg]
    assert car.bookings_version() == 2


# ---- commands in -----------------------------------------------------------------------------


def start_command(now: float, **kw: Any) -> bytes:
    return command_frame(CAR, kw.pop("id", "c-start"), "start", now, reservation_id="r1", **kw)


COMMAND_CASES = {
    "forged": (lambda now: start_command(now, key=FORGER_KEY), "does not verify"),
    "altered": (
        lambda now: start_command(now).replace(b'"r1"', b'"r2"'),
        "does not verify",
    ),
    "unsigned": (
        lambda now: messages.encode(
            messages.Command("c-start", CAR, "start", now, now + 60, {}).to_body()
        ),
        "not a signed message",
    ),
    "expired": (lambda now: start_command(now - 120, ttl=60), "expired at"),
    "other_car": (
        lambda now: command_frame("car-002", "c-start", "start", now, reservation_id="r1"),
        "for car 'car-002'",
    ),
    "unknown_name": (
        lambda now: messages.encode(
            signing.sign(
                CLOUD_KEY,
                "command",
                {**messages.Command("c-x", CAR, "start", now, now + 60).to_body(), "name": "open"},
            )
        ),
        "name: expected one of",
    ),
}


@pytest.mark.parametrize("case", COMMAND_CASES)
def test_forged_altered_expired_and_misdirected_commands_are_refused(rig, caplog, case):
    # SPEC X-SEC-1, X-SEC-3, X-SAFE-2: the doors stay locked, no result, nothing applied
    caplog.set_level(logging.INFO, logger=LOGGER)
    car = rig.car
    rig.snapshot(1)
    wait_for(lambda: car.bookings_version() == 1)
    car.at(START)
    before = (car.store.load(), car.store.last_seq(), rig.refused())

    make, reason = COMMAND_CASES[case]
    rig.cloud.publish(COMMANDS, make(car.clock.now()))

    wait_for(lambda: rig.refused() > before[2], what="the refusal")
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any(reason in line and COMMANDS in line for line in lines), lines
    assert car.state == "idle"
    assert car.body.car.doors == "locked"
    assert (car.store.load(), car.store.last_seq()) == before[:2]
    assert not car.store.command_seen("c-start")


@BOTH
def test_a_command_gets_exactly_one_result_however_often_it_comes(rig, caplog, tmp_path):
    # SPEC S-SYNC-3, U-START-5, X-SEC-1 (replay): a remote start over MQTT opens the car once
    caplog.set_level(logging.INFO, logger=LOGGER)
    car = rig.car
    rig.snapshot(1)
    wait_for(lambda: car.bookings_version() == 1)
    car.at(START)
    frame = start_command(car.clock.now())
    rig.cloud.publish(COMMANDS, frame)
    results = wait_for(lambda: rig.cloud.events_of(CAR, "command_result"), what="the result")
    assert results[0]["data"] | {"at": 0} == {
        "command_id": "c-start",
        "ok": True,
        "code": "started",
        "name": "start",
        "reservation_id": "r1",
        "at": 0,
    }
    assert car.state == "unlocked"

    def refusals() -> int:
        return sum("c-start (start): already received" in r.getMessage() for r in caplog.records)

    rig.cloud.publish(COMMANDS, frame)  # a replay by anyone who recorded it
    wait_for(lambda: refusals() == 1, what="the replay's refusal")
    rig.cloud.publish(COMMANDS, frame)
    wait_for(lambda: refusals() == 2, what="the second replay's refusal")
    car.close()  # and again to a restarted unit, which knows it only from its store
    rig.car = car = LinkedCar(tmp_path, rig.broker, car.clock.now())
    wait_for(car.connected)
    rig.cloud.publish(COMMANDS, frame)
    wait_for(lambda: refusals() == 3, what="the refusal after a restart")
    car.query(lambda: None)
    time.sleep(0.1)  # a second result, if there were one, would be on its way by now
    assert len(first_arrivals(rig.cloud.events_of(CAR, "command_result"))) == 1


# ---- events, state and presence out ------------------------------------------------------------


def whole_trip(car: LinkedCar) -> None:
    """Tap, drive, return and end a trip, then let the forgotten-item window close."""
    car.at(START)
    car.send(CardTapped(ALICE))
    assert car.state == "unlocked"
    car.send(DoorChanged("driver", True))
    car.send(KeyChanged(False, "lend"))
    car.send(DoorChanged("driver", False))
    car.send(EngineChanged(True))
    car.send(BrakeChanged(False))
    car.at(START + HOUR)
    car.send(PositionChanged(36.4466, 140.6065))
    car.send(VehicleData(12345.6, 40.0))
    car.send(BrakeChanged(True))
    car.send(EngineChanged(False))
    car.send(DoorChanged("driver", True))
    car.send(KeyChanged(True, "return"))
    car.send(DoorChanged("driver", False))
    car.send(CardTapped(ALICE))
    assert car.state == "forgotten_item_window", car.state
    car.at(START + HOUR + 11 * MIN)
    assert car.state == "idle"


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_a_trip_driven_offline_reaches_the_cloud_in_order_when_the_broker_is_back(tmp_path, kind):
    # SPEC S-SYNC-2, U-DATA-1: the broker is down for a whole trip; every event waits in the
    # outbox (none leaves before the broker has it) and arrives, in order, once it is back.
    persistent = kind == "mosquitto"
    # the embedded broker keeps sessions in memory: the cloud subscribes again before the car
    # is back (kagi cloud serve starts its sync with its broker)
    settings = FAST if persistent else LinkSettings(reconnect_min=0.5, reconnect_max=0.5)
    with running(kind, persistence=persistent) as b:
        cloud = CloudClient(b).connect()
        car = LinkedCar(tmp_path, b, START - HOUR, settings=settings)
        try:
            wait_for(car.connected)
            cloud.snapshot(CAR, bookings(1).to_dict(), car.clock.now())
            wait_for(lambda: car.bookings_version() == 1)
            cloud.disconnect()  # the cloud is away too: its session queues the events
            b.stop()  # (a clean stop: Mosquitto saves its sessions)
            wait_for(lambda: not car.connected(), what="the car sees the broker go")

            whole_trip(car)
            time.sleep(0.3)  # the link tries to reconnect meanwhile
            made = car.store.last_seq()
            assert [e.seq for e in car.store.pending(1000)] == list(range(1, made + 1))

            restart(b)
            if not persistent:
                cloud = CloudClient(b).connect()
            wait_for(lambda: car.store.pending_count() == 0, 10, "the outbox to empty")
            if persistent:
                cloud = CloudClient(b).connect()  # its session kept what came meanwhile
            wait_for(lambda: len(first_arrivals(cloud.events_of(CAR))) >= made, 5, "events")
            got = first_arrivals(cloud.events_of(CAR))
            assert [e["seq"] for e in got] == list(range(1, made + 1))
            assert [e["type"] for e in got] == [
                "trip_started",
                "key_taken",
                "key_returned",
                "trip_ended",
                "forgotten_window_closed",
            ]
        finally:
            car.close()
            cloud.disconnect()


def test_state_and_presence_are_retained_and_kept_current(rig):
    # SPEC S-SYNC-4: the operator sees every car's state and whether it is online
    car, cloud = rig.car, rig.cloud
    rig.snapshot(1)
    wait_for(lambda: cloud.states.get(CAR, {}).get("state", {}).get("bookings_version") == 1)
    assert cloud.online[CAR]["online"] is True
    state = cloud.states[CAR]["state"]
    assert state["trip_state"] == "idle" and state["doors"] == "locked"
    assert state["immobilised"] is True and state["firmware"]

    car.at(START)
    car.send(CardTapped(ALICE))
    car.send(DoorChanged("driver", True))
    car.send(VehicleData(12000.5, 55.0))
    car.send(PositionChanged(35.68, 139.76))

    def current() -> dict[str, Any] | None:
        s = cloud.states.get(CAR, {}).get("state", {})
        return s if s.get("position") else None

    state = wait_for(current, what="the state after the tap")
    assert state == state | {
        "trip_state": "unlocked",
        "reservation_id": "r1",
        "driver_id": ALICE_ID,
        "doors": "unlocked",
        "immobilised": True,
        "key_present": True,
        "parking_brake": True,
        "engine_running": False,
        "fuel_pct": 55.0,
        "odometer_km": 12000.5,
        "position": {"lat": 35.68, "lon": 139.76},
    }
    assert state["doors_open"]["driver"] is True

    car.close()  # a clean stop says so itself
    wait_for(lambda: cloud.online[CAR]["online"] is False, what="offline")
    late = CloudClient(rig.broker, client_id="late-watcher").connect()
    try:  # retained: a cloud worker that starts later sees the same
        wait_for(lambda: late.states.get(CAR) and late.online.get(CAR))
        assert late.states[CAR]["state"]["trip_state"] == "unlocked"
        assert late.online[CAR]["online"] is False
    finally:
        late.disconnect()


# ---- the clock ---------------------------------------------------------------------------------


def test_a_wrong_clock_is_reported_once_and_again_after_it_was_right(rig, caplog):
    # A unit whose clock is off checks expiry wrongly (SPEC X-SEC-1): it says so, once.
    caplog.set_level(logging.INFO, logger=LOGGER)
    car, cloud = rig.car, rig.cloud
    now = car.clock.now()
    rig.cloud.snapshot(CAR, bookings(1).to_dict(), now + HOUR)  # the cloud is an hour ahead
    wait_for(lambda: car.bookings_version() == 1)
    cloud.command(CAR, "c-1", "locate", now + HOUR)
    wait_for(lambda: cloud.events_of(CAR, "command_result"), what="the locate result")
    skews = cloud.events_of(CAR, "clock_skew")
    assert len(skews) == 1
    assert skews[0]["data"]["offset_s"] == pytest.approx(3600)
    assert "snapshot" in skews[0]["data"]["source"]
    warnings = [r for r in caplog.records if "clock looks wrong" in r.getMessage()]
    assert len(warnings) == 1

    time.sleep(FAST.settle)  # now a live message that agrees…
    cloud.command(CAR, "c-2", "locate", now)
    wait_for(lambda: any("agrees" in r.getMessage() for r in caplog.records))
    # …and one from an hour ago, live: the unit's clock is ahead, every command looks expired
    cloud.command(CAR, "c-3", "start", now - HOUR, ttl=600, reservation_id="r1")
    wait_for(lambda: len(cloud.events_of(CAR, "clock_skew")) == 2, what="the second report")
    assert cloud.events_of(CAR, "clock_skew")[1]["data"]["offset_s"] == pytest.approx(-3600)
    assert any("c-3" in r.getMessage() and "expired" in r.getMessage() for r in caplog.records)
    assert car.state == "idle"


# ---- the connection --------------------------------------------------------------------------


def test_the_link_waits_for_an_absent_broker_without_filling_the_log(tmp_path, caplog):
    # A car in a garage: the broker is unreachable for a while; one line, then it connects
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with running() as b:
        b.stop()
        car = LinkedCar(tmp_path, b, START - HOUR)
        try:
            time.sleep(0.8)  # several attempts at 0.05, 0.1, 0.2, 0.2… s
            attempts = [r for r in caplog.records if "cannot reach" in r.getMessage()]
            assert len(attempts) >= 3
            assert sum(r.levelno == logging.WARNING for r in attempts) == 1
            assert "car-secret" not in caplog.text  # never the password
            b.start()
            wait_for(car.connected, 3, "the car connects once the broker is up")
        finally:
            car.close()


def test_a_wrong_password_is_refused_and_named(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with running() as b:
        car = LinkedCar(tmp_path, b, START, url=car_url(b, CAR, password="guess"))
        try:
            wait_for(lambda: "refused the connection" in car.link.status()["last_error"])
            assert not car.connected()
            assert "guess" not in caplog.text
        finally:
            car.close()


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_tls_with_the_operators_ca_and_only_with_it(tmp_path, kind, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    tls = make_ca(tmp_path / "operator")
    stranger = make_ca(tmp_path / "stranger")
    with running(kind, tls=tls) as b:
        url = car_url(b, CAR, scheme="mqtts")
        assert tls.cafile is not None and stranger.cafile is not None
        car = LinkedCar(tmp_path / "a", b, START, url=url, ca=str(tls.cafile))
        cloud = CloudClient(b, tls=tls.cafile).connect()
        try:
            wait_for(car.connected, what="the car connects over TLS")
            cloud.snapshot(CAR, bookings(1).to_dict(), car.clock.now())
            wait_for(lambda: car.bookings_version() == 1)
        finally:
            car.close()
            cloud.disconnect()
        impostor = LinkedCar(tmp_path / "b", b, START, url=url, ca=str(stranger.cafile))
        try:  # a broker this CA did not sign is not the operator's
            wait_for(lambda: "certificate verify failed" in impostor.link.status()["last_error"])
            assert not impostor.connected()
        finally:
            impostor.close()


def test_only_the_links_own_thread_writes_its_tls_connection(tmp_path, monkeypatch):
    # events and state go out from the link's worker, acks from the runner's commits: paho
    # writes on the caller's thread unless told not to, and two threads writing one TLS socket
    # garble its records — Mosquitto then drops the car ("bad record mac", seen on the
    # sim-prod rig). Every write must go out on the network thread (cloud-net).
    writers: dict[int, set[str]] = {}  # socket → the threads that wrote it
    send = ssl.SSLSocket.send

    def recorded(sock: ssl.SSLSocket, data: Any, flags: int = 0) -> int:
        writers.setdefault(id(sock), set()).add(threading.current_thread().name)
        return send(sock, data, flags)

    monkeypatch.setattr(ssl.SSLSocket, "send", recorded)
    tls = make_ca(tmp_path / "operator")
    assert tls.cafile is not None
    with running("mosquitto", tls=tls) as b:
        url = car_url(b, CAR, scheme="mqtts")
        car = LinkedCar(tmp_path / "a", b, START, url=url, ca=str(tls.cafile))
        cloud = CloudClient(b, tls=tls.cafile).connect()
        try:
            wait_for(car.connected, what="the car connects over TLS")
            cloud.snapshot(CAR, bookings(1).to_dict(), car.clock.now())
            wait_for(lambda: car.bookings_version() == 1)
            whole_trip(car)
            wait_for(lambda: "trip_ended" in [e["type"] for e in cloud.events], what="the trip")
        finally:
            car.close()
            cloud.disconnect()
    # the car's connections are those its network thread wrote; nothing else wrote them
    cars = [threads for threads in writers.values() if "cloud-net" in threads]
    assert cars and all(threads == {"cloud-net"} for threads in cars), writers


def test_events_the_broker_acknowledged_just_before_it_crashed_are_sent_again(tmp_path):
    # SPEC S-SYNC-2: Mosquitto sends PUBACK before it saves (here: a timed autosave); killed
    # right after, it comes back without them. An event stays in the outbox for `hold` after its
    # PUBACK and goes out again on the next connection; the cloud, whose session was queueing,
    # gets every event.
    with running("mosquitto", persistence=True) as b:
        assert isinstance(b, Mosquitto)
        cloud = CloudClient(b).connect()
        cloud.disconnect()
        wait_for(lambda: (b.folder / "mosquitto.db").exists(), what="its session saved")
        car = LinkedCar(tmp_path, b, START - HOUR, settings=replace(FAST, hold=3.0))
        try:
            wait_for(car.connected)
            for round_ in range(5):
                for i in range(8):
                    car.send(RemoteCommand(f"r{round_}-{i}", "locate"))

                def all_acknowledged() -> bool:
                    status = car.link.status()
                    return bool(status["holding"] >= 8 and not status["in_flight"])

                wait_for(all_acknowledged, what="every PUBACK")
                b.kill()  # within milliseconds of the last PUBACK
                b.start()
                wait_for(lambda: car.link.counts()["connections"] > round_ + 1, 5)  # noqa: B023
            wait_for(lambda: car.link.status()["caught_up"], 10, "the outbox to empty")
            assert car.store.pending_count() == 0
            made = car.store.last_seq()
            assert made == 40
            assert car.link.counts()["events_resent"] >= 8
        finally:
            car.close()
        cloud = CloudClient(b).connect()
        try:
            with contextlib.suppress(AssertionError):
                wait_for(lambda: len(first_arrivals(cloud.events_of(CAR))) >= made, 5)
            seqs = {e["seq"] for e in cloud.events_of(CAR)}
            assert sorted(set(range(1, made + 1)) - seqs) == []
        finally:
            cloud.disconnect()

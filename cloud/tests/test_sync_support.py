"""What the sync's tests share: a private Mosquitto, a fleet in the store, cloud sync workers, and
simulated cars — real paho clients with the cars' own broker accounts that verify what they get
with `protocol.signing` (as the car unit does) and publish events as the car's outbox does.

(No tests here; `test_sync*.py` import these.)
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.auth import Caller
from cloud.mosquitto import CLOUD_USER, Mosquitto
from cloud.policy import default_policy
from cloud.service import Cloud
from cloud.store import Store, open_store
from cloud.sync import CloudSync, SyncConfig, public_key
from protocol import messages, signing, topics
from protocol.cards import card_hash
from tools.rig.wait import wait_for

T = TypeVar("T")
CLOUD_PASSWORD = "cloud-secret"
CARS = ("car-1", "car-2")
UNKNOWN_CAR = "car-9"  # has a broker account, but is no car of the store
JST = dt.timezone(dt.timedelta(hours=9))
MEMBER = "XXY00001"
ALICE = "XXY00001001"  # admin driver, one plain card and one strong card
BOB = "XXY00001002"
FLEET_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ALICE_CARD = card_hash(FLEET_KEY, bytes.fromhex("0101010101010101"))
ALICE_STRONG = card_hash(FLEET_KEY, bytes.fromhex("0303030303030303"))
BOB_CARD = card_hash(FLEET_KEY, bytes.fromhex("0202020202020202"))
NEW_CARD = card_hash(FLEET_KEY, bytes.fromhex("0909090909090909"))
POLICY = default_policy()


def password(car_id: str) -> str:
    return f"pw-{car_id}"


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A time in November 2026, Japanese time (the clock fixture starts on the 23rd, 18:00)."""
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=JST)


def wait_until(check: Callable[[], T | None], timeout: float = 3.0, what: str = "") -> T:
    """The first true value of `check()`, polled; AssertionError after `timeout` seconds."""
    value: T = wait_for(check, what or repr(check), timeout, interval=0.005)
    return value


def add_fleet(db: Store) -> Store:
    db.add_station("st-1", name="Station 1", lat=35.0, lon=139.0, radius_m=50)
    for car in CARS:
        db.add_car(car, station_id="st-1", name=f"Fit {car[-1]}")
    db.add_member(MEMBER, name="Example Co.")
    expiry = dt.date(2030, 1, 1)
    db.add_driver(ALICE, name="Aki", email="aki@example.jp", licence_expiry=expiry, is_admin=True)
    db.add_driver(BOB, name="Bob", email="bob@example.jp", licence_expiry=dt.date(2029, 6, 30))
    db.add_card(ALICE, ALICE_CARD)
    db.add_card(ALICE, ALICE_STRONG, strong=True)
    db.add_card(BOB, BOB_CARD)
    return db


def caller(driver_id: str = ALICE) -> Caller:
    return Caller(driver_id, "driver", MEMBER, admin=driver_id == ALICE)


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    accounts = {CLOUD_USER: CLOUD_PASSWORD, **{c: password(c) for c in (*CARS, UNKNOWN_CAR)}}
    with Mosquitto(accounts) as server:
        yield server


@pytest.fixture
def fleet(db: Store) -> Store:
    return add_fleet(db)


_workers = itertools.count(1)


def sync_config(broker: Mosquitto, **more: Any) -> SyncConfig:
    options: dict[str, Any] = {"poll_interval": 0.05, **more}
    return SyncConfig(
        f"mqtt://{broker.host}:{broker.port}",
        password=CLOUD_PASSWORD,
        worker=f"test-{uuid.uuid4().hex[:8]}-{next(_workers)}",
        **options,
    )


class Workers:
    """Cloud sync workers on the test's broker, and extra store connections (as other processes
    would have); all stopped and closed at the end of the test, workers first."""

    def __init__(self, broker: Mosquitto, fleet: Store, clock: Any) -> None:
        self.broker, self.fleet, self.clock = broker, fleet, clock
        self.started: list[CloudSync] = []
        self.stores: list[Store] = []

    def store(self) -> Store:
        """Another connection to the test's database."""
        store = open_store(self.fleet.url, migrate=False, clock=self.clock)
        self.stores.append(store)
        return store

    def __call__(self, store: Store | None = None, **more: Any) -> CloudSync:
        """A started and connected worker, on `store` or on a connection of its own."""
        store = store or self.store()
        sync = CloudSync(store, POLICY, sync_config(self.broker, **more), clock=self.clock)
        self.started.append(sync.start())
        assert sync.wait_connected(5), "the sync did not connect"
        return sync

    def close(self) -> None:
        for sync in self.started:
            sync.stop()
        for store in self.stores:
            store.close()


@pytest.fixture
def start_sync(broker: Mosquitto, fleet: Store, clock: Any) -> Iterator[Workers]:
    workers = Workers(broker, fleet, clock)
    yield workers
    workers.close()


@pytest.fixture
def sync(fleet: Store, start_sync: Workers) -> CloudSync:
    return start_sync(fleet)


@pytest.fixture
def cloud(fleet: Store, sync: CloudSync, clock: Any) -> Cloud:
    return Cloud(fleet, POLICY, clock, cars=sync, command_timeout=2.0)


@dataclass
class Received:
    at: float  # time.monotonic() on arrival
    body: Any  # Snapshot or Command


@dataclass
class SimCar:
    """A car on the broker with its own account: verifies every snapshot and command with the
    cloud's public key, keeps what verified, and publishes events, state and presence."""

    broker: Any  # Mosquitto or the embedded broker: its host and port
    car_id: str
    key_hex: str
    answer: Callable[[messages.Command], tuple[bool, str, dict[str, Any]] | None] | None = None
    snapshots: list[Received] = field(default_factory=list)
    commands: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    seq: int = 0

    def __post_init__(self) -> None:
        self.key = signing.public_key_from_hex(self.key_hex)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sim-{self.car_id}-{uuid.uuid4().hex[:6]}"
        )
        self.client.username_pw_set(self.car_id, password(self.car_id))
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    def connect(self) -> SimCar:
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        self.client.subscribe(
            [(topics.topic(self.car_id, k), 1) for k in ("reservations", "commands")]
        )
        assert self._subscribed.wait(5)
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        _, kind = topics.parse(msg.topic)
        arrived = time.monotonic()
        try:
            wire = messages.decode(bytes(msg.payload))
            if kind == "reservations":
                snapshot = messages.Snapshot.from_body(
                    signing.verify(self.key, wire, messages.Snapshot.KIND)
                )
                assert snapshot.car_id == self.car_id
                self.snapshots.append(Received(arrived, snapshot))
            else:
                command = messages.Command.from_body(
                    signing.verify(self.key, wire, messages.Command.KIND)
                )
                assert command.car_id == self.car_id
                self.commands.append(Received(arrived, command))
                reply = self.answer(command) if self.answer else None
                if reply is not None:
                    ok, code, data = reply
                    self.event(
                        "command_result",
                        {"command_id": command.id, "ok": ok, "code": code, **data},
                        wait=False,  # on paho's thread: its PUBACK cannot come while we wait
                    )
        except (ValueError, AssertionError) as exc:
            self.refused.append(f"{kind}: {exc}")

    # ---- what the car sees --------------------------------------------------------------------

    def latest(self) -> dict[str, Any] | None:
        return self.snapshots[-1].body.bookings if self.snapshots else None

    def wait_snapshot(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 2.0
    ) -> Received:
        """The first snapshot received whose bookings satisfy `check`."""

        def found() -> Received | None:
            return next((r for r in self.snapshots if check(r.body.bookings)), None)

        return wait_until(found, timeout, f"a snapshot of {self.car_id} as expected")

    # ---- what the car sends -------------------------------------------------------------------

    def event(
        self,
        type: str,
        data: dict[str, Any],
        *,
        seq: int | None = None,
        event_id: str | None = None,
        at: float = 0.0,
        wait: bool = True,
    ) -> messages.Event:
        if seq is None:
            self.seq += 1
            seq = self.seq
        event = messages.Event(
            event_id or uuid.uuid4().hex, self.car_id, seq, type, at or time.time(), data
        )
        self.send_event(event, wait)
        return event

    def send_event(self, event: messages.Event, wait: bool = True) -> None:
        self.publish("events", messages.encode(event.to_body()), wait=wait)

    def publish(self, kind: str, payload: bytes, retain: bool = False, wait: bool = True) -> None:
        info = self.client.publish(topics.topic(self.car_id, kind), payload, qos=1, retain=retain)
        if wait:
            info.wait_for_publish(5)


@pytest.fixture
def cars(broker: Mosquitto, fleet: Store) -> Iterator[Callable[..., SimCar]]:
    made: list[SimCar] = []

    def make(car_id: str = "car-1", **more: Any) -> SimCar:
        car = SimCar(broker, car_id, public_key(fleet), **more).connect()
        made.append(car)
        return car

    yield make
    for car in made:
        car.close()

"""The cloud's side of the car <-> cloud contract, for the cloud link's tests.

`CloudClient` is what the operator's cloud does on the broker: it signs snapshots and commands
with the cloud's key (a fixed test key) and publishes them, and it watches the cars' events,
state and presence with a persistent session at QoS 1, keeping every event it receives (with
duplicates) in arrival order. `LinkedCar` is a car unit in this process: the real runner, SQLite
store and MQTT link, with the fake body and reader, on a manual clock.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.accounts import Tls
from cloud.broker import BrokerStartError, EmbeddedBroker
from cloud.mosquitto import CLOUD_USER, Mosquitto
from firmware.clock import ManualClock
from firmware.cloud_link import LinkSettings, MqttCloudLink, no_delay
from firmware.config import TripConfig
from firmware.effects import Effect
from firmware.fakes import FakeBody, FakeReader
from firmware.inputs import Input
from firmware.runner import Runner
from firmware.store import SqliteStore
from protocol import messages, signing, topics
from tools.rig.tls import make_tls
from tools.rig.wait import wait_for as rig_wait_for

# the cloud's signing key (RFC 8032 test 2) and a key nobody trusts
CLOUD_KEY = signing.private_key_from_hex(
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
)
CLOUD_PUBLIC = signing.public_key_hex(CLOUD_KEY)
FORGER_KEY = signing.private_key_from_hex(
    "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"
)
PASSWORD = "car-secret"
CLOUD_PASSWORD = "cloud-secret"
CARD_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")

FAST = LinkSettings(reconnect_min=0.05, reconnect_max=0.2, settle=0.3, max_skew=300, hold=0.2)


class BrokerLike(Protocol):
    host: str
    port: int

    def start(self) -> Any: ...
    def stop(self) -> None: ...


def broker(
    cars: tuple[str, ...] = ("car-001",),
    persistence: bool = False,
    kind: str = "mosquitto",
    tls: Tls | None = None,
) -> Mosquitto | EmbeddedBroker:
    """A broker with an account per car and the cloud's; not started."""
    accounts = {car: PASSWORD for car in cars}
    if kind == "embedded":
        return EmbeddedBroker(accounts, tls=tls, cloud_password=CLOUD_PASSWORD)
    return Mosquitto(accounts | {CLOUD_USER: CLOUD_PASSWORD}, persistence=persistence, tls=tls)


@contextlib.contextmanager
def running(
    kind: str = "mosquitto", persistence: bool = False, tls: Tls | None = None
) -> Iterator[Mosquitto | EmbeddedBroker]:
    b = broker(("car-001", "car-002"), persistence, kind, tls)
    b.start()
    try:
        yield b
    finally:
        if isinstance(b, Mosquitto):
            b.close()
        else:
            b.stop()


def restart(b: Mosquitto | EmbeddedBroker) -> None:
    """Start a stopped broker again on its port.

    amqtt's shutdown can end in a CancelledError from its broadcast loop before it closes its
    listener (seen with clients connected); the socket then lingers until it is collected."""
    for attempt in range(50):
        try:
            b.start()
            return
        except BrokerStartError:
            if attempt == 49:
                raise
            gc.collect()
            time.sleep(0.05)


def car_url(b: BrokerLike, car_id: str, password: str = PASSWORD, scheme: str = "mqtt") -> str:
    return f"{scheme}://{car_id}:{password}@{b.host}:{b.port}"


def make_ca(folder: Path, host: str = "127.0.0.1") -> Tls:
    """An operator's CA and a broker certificate it signed for `host` (PEM files in `folder`)."""
    return make_tls(folder, host)


def wait_for(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll `check` until it returns something true; its value, or AssertionError."""
    return rig_wait_for(check, what or repr(check), timeout, interval=0.005)


def snapshot_frame(
    car_id: str,
    bookings: dict[str, Any],
    issued_at: float,
    key: Any = CLOUD_KEY,
) -> bytes:
    body = messages.Snapshot(car_id, issued_at, bookings).to_body()
    return messages.encode(signing.sign(key, messages.Snapshot.KIND, body))


def command_frame(
    car_id: str,
    command_id: str,
    name: str,
    issued_at: float,
    ttl: float = 60.0,
    key: Any = CLOUD_KEY,
    **args: Any,
) -> bytes:
    body = messages.Command(command_id, car_id, name, issued_at, issued_at + ttl, args).to_body()
    return messages.encode(signing.sign(key, messages.Command.KIND, body))


class CloudClient:
    """The cloud on the broker: publishes signed data, watches events, state and presence."""

    def __init__(
        self, b: BrokerLike, client_id: str = "kagi-cloud-test", tls: Path | None = None
    ) -> None:
        self.broker = b
        self.tls = tls  # the operator's CA, for a TLS broker
        self.client_id = client_id
        self.events: list[dict[str, Any]] = []  # every delivery, duplicates included
        self.states: dict[str, dict[str, Any]] = {}
        self.online: dict[str, dict[str, Any]] = {}
        self.bad: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None

    def connect(self) -> CloudClient:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
        )
        client.username_pw_set(CLOUD_USER, CLOUD_PASSWORD)
        if self.tls is not None:
            client.tls_set(ca_certs=str(self.tls))
        client.on_message = self._on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_socket_open = no_delay  # as the car does: no 40 ms wait after each PUBACK
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        client.subscribe([(topics.fleet_filter(k), 1) for k in topics.FROM_CAR])
        if not subscribed.wait(5):
            raise AssertionError("the cloud's subscription was not granted")
        self._client = client
        return self

    def disconnect(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        car_id, kind = topics.parse(msg.topic)
        try:
            body = messages.decode(bytes(msg.payload))
        except messages.MessageError as exc:
            self.bad.append((msg.topic, str(exc)))
            return
        with self._lock:
            if kind == "events":
                self.events.append(messages.Event.from_body(body).to_body())
            elif kind == "state":
                self.states[car_id] = messages.State.from_body(body).to_body()
            elif kind == "online":
                self.online[car_id] = messages.Online.from_body(body).to_body()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        assert self._client is not None, "connect() first"
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)

    def snapshot(self, car_id: str, bookings: dict[str, Any], issued_at: float, **kw: Any) -> None:
        frame = snapshot_frame(car_id, bookings, issued_at, **kw)
        self.publish(topics.topic(car_id, "reservations"), frame, retain=True)

    def command(self, car_id: str, command_id: str, name: str, issued_at: float, **kw: Any) -> None:
        frame = command_frame(car_id, command_id, name, issued_at, **kw)
        self.publish(topics.topic(car_id, "commands"), frame)

    def events_of(self, car_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e["car_id"] == car_id and (kind is None or e["type"] == kind)
            ]

    def __enter__(self) -> CloudClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


def first_arrivals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event once, in the order it first arrived (the cloud drops repeats by id)."""
    seen: set[str] = set()
    out = []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


class LinkedCar:
    """A car unit in this process, linked to a broker: runner + SQLite + MQTT link + fakes."""

    def __init__(
        self,
        folder: Path,
        b: BrokerLike,
        t: float,
        car_id: str = "car-001",
        settings: LinkSettings = FAST,
        public_key: str = CLOUD_PUBLIC,
        url: str | None = None,
        ca: str = "",
    ) -> None:
        self.car_id = car_id
        folder.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(folder / f"{car_id}.db")
        self.clock = ManualClock(t)
        self.body, self.reader = FakeBody(), FakeReader()
        self.link = MqttCloudLink(
            url or car_url(b, car_id),
            car_id,
            public_key,
            self.store,
            self.clock,
            settings=settings,
            ca=ca,
        )
        self.runner = Runner(
            TripConfig(), CARD_KEY, self.store, self.body, self.reader, self.link, self.clock
        )
        self.runner.start()
        self._thread = threading.Thread(target=self.runner.run, name="runner", daemon=True)
        self._thread.start()
        self.closed = False

    def send(self, event: Input) -> list[Effect]:
        effects: list[Effect] = self.runner.submit(event).result(5)
        return effects

    def at(self, t: float) -> None:
        self.clock.set(t)
        self.runner.submit(lambda: self.runner.step(None)).result(5)

    def query(self, work: Callable[[], Any]) -> Any:
        """Run `work` on the runner's thread (after everything posted before it)."""
        return self.runner.submit(work).result(5)

    @property
    def state(self) -> str:
        core = self.runner.core
        assert core is not None
        return str(self.query(lambda: core.state))

    def bookings_version(self) -> int:
        return self.store.load()[1].version

    def connected(self) -> bool:
        return bool(self.link.status()["connected"])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.runner.stop()
        self._thread.join(5)
        self.runner.close()


def events_by_seq(events: list[dict[str, Any]]) -> Iterator[int]:
    return (e["seq"] for e in events)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()

"""One cloud sync worker on MQTT (paho): snapshots out, commands out and back, events in.

    sync = CloudSync(store, policy, SyncConfig("mqtt://127.0.0.1:1883", password="…"))
    with sync:                                   # connects, subscribes, starts its threads
        cloud = Cloud(store, policy, clock, cars=sync)   # remote operations go through it

Threads: paho's network loop only queues what arrives; the *ingest* thread applies it to the
store (events in per-car order, idempotent by id; `state` and `online` kept) and only then
acknowledges it to the broker (manual PUBACK), so an event is never lost between the broker and
the database; the *publisher* thread publishes each car's snapshot when the store says it changed
(triggers mark it, whoever wrote), at once when `changed()` is called, and every
`refresh_interval` as the window moves. Several workers (processes, or machines on one
PostgreSQL) share the event stream through the MQTT shared subscription `$share/kagi-cloud/…`;
each needs its own `worker` name (its MQTT client id).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.clock import Clock, system_clock
from cloud.mosquitto import CLOUD_USER
from cloud.policy import Policy
from cloud.service import Refused
from cloud.store import NotFound, Store, StoreError
from cloud.store.sync import EventIn
from cloud.sync.events import EventApplier
from cloud.sync.snapshots import (
    Window,
    content,
    digest,
    next_version,
    signed_snapshot,
    signing_key,
)
from protocol import messages, signing, topics

log = logging.getLogger("cloud.sync")


@dataclass(frozen=True)
class SyncConfig:
    """Where the broker is and how this worker behaves. `broker` is `mqtt://HOST[:PORT]` or
    `mqtts://HOST[:PORT]` (TLS, verified against `cafile` or the system's CAs); a user and
    password in the URL override `username` and `password`."""

    broker: str = "mqtt://127.0.0.1:1883"
    username: str = CLOUD_USER
    password: str = ""
    worker: str = "1"
    cafile: str | None = None
    window: Window = field(default_factory=Window)
    poll_interval: float = 0.1  # how often the store is asked which cars changed elsewhere
    refresh_interval: float = 3600.0  # every car's snapshot is rebuilt (the window moves)
    # Wait this long for a missing event before applying the later ones without it. A unit never
    # drops one; what is missing is still queued at the broker, behind the other cars' events
    # or on another worker's share, and a reconnect storm queues for minutes (benchmarks/storm.py).
    gap_timeout: dt.timedelta = dt.timedelta(minutes=5)
    publish_timeout: float = 2.0  # wait this long for a snapshot's PUBACK
    command_poll: float = 0.05  # results another worker ingested are looked for this often
    batch: int = 200  # messages applied per ingest round
    cars_per_commit: int = 32  # cars whose events are applied in one transaction
    shared: bool = True  # events by shared subscription (several workers); False: one worker

    def endpoint(self) -> tuple[str, int, bool, str, str]:
        """(host, port, tls, username, password), or ValueError naming what is wrong."""
        url = urlsplit(self.broker)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise ValueError(
                f"broker: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {self.broker!r}"
            )
        tls = url.scheme == "mqtts"
        try:
            port = url.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"broker: bad port in {self.broker!r}") from None
        user = unquote(url.username) if url.username else self.username
        password = unquote(url.password) if url.password else self.password
        return url.hostname, port, tls, user, password


@dataclass
class SyncStats:
    received: int = 0  # messages from cars taken from the broker
    snapshots: int = 0  # snapshots published
    events: int = 0  # events applied (or kept)
    duplicates: int = 0  # events received again and ignored
    refused: int = 0  # messages refused (malformed, another car's, unknown car)
    states: int = 0  # state and online reports kept


class CloudSync:
    """A sync worker; also the API's `CarOperations` (remote operations) and `CarSync`
    (`changed`, called after a booking write so its snapshot goes out at once)."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        config: SyncConfig | None = None,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self._snapshots = store  # the publisher's connection: its own once started, if it can
        self.policy = policy
        self.config = config or SyncConfig()
        self.clock = clock
        self.key = signing_key(store)
        self.public_key = signing.public_key_hex(self.key)
        self.stats = SyncStats()
        self._applier = EventApplier(store, policy)
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._force: set[str] = set()  # cars to publish with a new version whatever they hold
        self._unconfirmed: set[str] = set()  # published without a PUBACK: again on reconnect
        self._republish_all = False
        self._waiters: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        host, port, tls, user, password = self.config.endpoint()
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"kagi-cloud-{self.config.worker}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        self._client.username_pw_set(user, password)
        if tls:
            self._client.tls_set(ca_certs=self.config.cafile)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_socket_open = _no_delay
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # ---- life -------------------------------------------------------------------------------

    def start(self) -> Self:
        # Its own connection, so that a snapshot waiting for its PUBACK holds no event back.
        self._snapshots = self.store.another() or self.store
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        for name, target in (("publisher", self._publisher), ("ingest", self._ingester)):
            thread = threading.Thread(
                target=target, name=f"kagi-sync-{self.config.worker}-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(10)
        self._threads.clear()
        self._client.disconnect()
        self._client.loop_stop()
        if self._snapshots is not self.store:
            self._snapshots.close()
            self._snapshots = self.store

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ---- paho's thread: only note and queue -------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker %s:%d refused the cloud: %s", self._host, self._port, reason)
            return
        client.subscribe(
            [
                (topics.fleet_filter("events", shared=self.config.shared), topics.QOS),
                # retained reports are not sent to shared subscriptions: every worker keeps them
                (topics.fleet_filter("state"), topics.QOS),
                (topics.fleet_filter("online"), topics.QOS),
            ]
        )
        with self._lock:
            if not flags.session_present:
                self._republish_all = True  # the broker may have lost the retained snapshots
            self._force |= self._unconfirmed
            self._unconfirmed.clear()
        log.info("connected to %s:%d as worker %s", self._host, self._port, self.config.worker)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning(
                "disconnected from %s:%d (%s); reconnecting", self._host, self._port, reason
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put(message)

    # ---- snapshots (S-SYNC-1) ---------------------------------------------------------------

    def changed(self, car_id: str | None = None) -> None:
        """Something concerning `car_id` was written: publish now rather than at the next poll.
        (The store's triggers already know which cars changed.)"""
        self._wake.set()

    def _publisher(self) -> None:
        interval = self.config.refresh_interval
        next_refresh = time.monotonic() + interval
        next_release = time.monotonic() + 1.0
        while not self._stopping.is_set():
            self._wake.wait(self.config.poll_interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                refresh = time.monotonic() >= next_refresh
                if self._publish_round(refresh) and refresh:
                    next_refresh = time.monotonic() + interval
                if time.monotonic() >= next_release:
                    next_release = time.monotonic() + 1.0
                    self._release_parked()
            except Exception:
                log.exception("sync publisher: will try again")
                self._stopping.wait(1.0)

    def _publish_round(self, refresh: bool) -> bool:
        """Publish every car that needs it; False when the broker went away meanwhile."""
        if not self._connected.is_set():
            return False
        with self._lock:
            forced, self._force = self._force, set()
            everything, self._republish_all = self._republish_all, False
        cars = (
            self._snapshots.car_ids()
            if everything or refresh
            else sorted(set(self._snapshots.cars_to_publish()) | forced)
        )
        for i, car_id in enumerate(cars):
            if not self._connected.is_set():
                with self._lock:
                    self._force |= forced | set(cars[i:] if everything else ())
                    self._republish_all = self._republish_all or everything
                return False
            force = everything or car_id in forced
            try:
                self.publish(car_id, force=force, refresh=refresh)
            except Exception:  # this car's turn failed (the store?); the others go on
                log.exception("car %s: snapshot not published; trying again", car_id)
                if force:
                    with self._lock:
                        self._force.add(car_id)
        return True

    def publish(self, car_id: str, *, force: bool = False, refresh: bool = False) -> int | None:
        """Publish the car's snapshot if it changed (or `force`): its new version, else None."""
        now = self.clock()
        window = self.config.window
        with self._snapshots.snapshot_turn(car_id) as turn:
            if not (turn.pending or force or refresh):
                return None
            rows = self._snapshots.snapshot_rows(
                car_id, ends_after=now - window.back, starts_before=now + window.ahead
            )
            bookings = content(rows)
            fingerprint = digest(bookings)
            if fingerprint == turn.digest and not force:
                return None
            version = next_version(turn.version, now)
            try:
                payload = signed_snapshot(self.key, car_id, version, bookings, now)
            except messages.MessageError as exc:  # data the car would refuse: fix it, then it goes
                log.error("car %s: snapshot not published, the car would refuse it: %s",
                          car_id, exc)  # fmt: skip
                return None
            info = self._client.publish(
                topics.topic(car_id, "reservations"), payload, qos=topics.QOS, retain=True
            )
            if not self._acknowledged(info):
                with self._lock:
                    self._unconfirmed.add(car_id)
            turn.published(version, fingerprint)
        self.stats.snapshots += 1
        return version

    def _acknowledged(self, info: mqtt.MQTTMessageInfo) -> bool:
        """Wait for the PUBACK while connected: the car's row stays locked meanwhile, so the
        next version of this car cannot overtake this one at the broker."""
        deadline = time.monotonic() + self.config.publish_timeout
        try:
            while time.monotonic() < deadline and self._connected.is_set():
                if info.is_published():
                    return True
                info.wait_for_publish(0.05)
            return info.is_published()
        except (RuntimeError, ValueError):  # not connected when published: queued by paho
            return False

    # ---- events, state, presence (S-SYNC-2, S-SYNC-4) ---------------------------------------

    def _ingester(self) -> None:
        while not self._stopping.is_set():
            try:
                batch = [self._inbox.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < self.config.batch:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            except Exception:  # a bug must not stop the ingest; the broker keeps the messages
                log.exception("sync ingest: %d messages left unacknowledged", len(batch))

    def _handle(self, batch: list[mqtt.MQTTMessage]) -> None:
        self.stats.received += len(batch)
        events: dict[str, list[tuple[EventIn, mqtt.MQTTMessage]]] = {}
        for message in batch:
            try:
                car_id, kind = topics.parse(message.topic)
                body = messages.decode(bytes(message.payload))
                if kind == "events":
                    event = messages.Event.from_body(body)
                    _same_car(car_id, event.car_id)
                    item = EventIn(event.id, event.seq, event.type, event.at, event.data)
                    events.setdefault(car_id, []).append((item, message))
                    continue
                self._report(car_id, kind, body)
            except ValueError as exc:  # MessageError, a bad topic
                self._refuse(message, str(exc))
            except NotFound as exc:
                self._refuse(message, f"{exc} (not a car of this cloud)")
            self._ack(message)
        cars = list(events)  # the store takes each transaction's cars in the order of their ids
        step = self.config.cars_per_commit
        for first in range(0, len(cars), step):
            self._ingest({car: events[car] for car in cars[first : first + step]})

    def _report(self, car_id: str, kind: str, body: dict[str, Any]) -> None:
        if kind == "state":
            state = messages.State.from_body(body)
            _same_car(car_id, state.car_id)
            self._retrying(lambda: self.store.set_car_state(car_id, state.at, state.fields))
        elif kind == "online":
            online = messages.Online.from_body(body)
            _same_car(car_id, online.car_id)
            self._retrying(lambda: self.store.set_car_online(car_id, online.online, online.at))
        else:
            raise ValueError(f"topic: the cloud takes no {kind!r} from cars")
        self.stats.states += 1

    def _ingest(self, cars: dict[str, list[tuple[EventIn, mqtt.MQTTMessage]]]) -> None:
        """Several cars' events, applied in one transaction, then acknowledged."""

        def apply() -> dict[str, list[str] | NotFound]:
            self._applier.answered.clear()
            return self.store.ingest_many(
                {car: [e for e, _ in items] for car, items in cars.items()}, self._applier
            )

        outcomes = self._retrying(apply)
        if outcomes is None:
            return  # stopping: left unacknowledged, the broker delivers them again
        for car_id, items in cars.items():
            result = outcomes[car_id]
            if isinstance(result, NotFound):
                for _, message in items:
                    self._refuse(message, f"{result} (not a car of this cloud)")
                    self._ack(message)
                continue
            for (event, message), outcome in zip(items, result, strict=True):
                if outcome == "duplicate":
                    self.stats.duplicates += 1
                    log.info("car %s: event %s (seq %d) again: ignored", car_id, event.event_id,
                             event.seq)  # fmt: skip
                elif outcome != "parked":
                    self.stats.events += 1
                self._ack(message)
        self._wake_callers(self._applier.answered)

    def _release_parked(self) -> None:
        self._applier.answered.clear()
        self.store.release_parked(self._applier, waited=self.config.gap_timeout)
        self._wake_callers(self._applier.answered)

    def _retrying(self, work: Callable[[], Any]) -> Any:
        """`work()`, again after a pause while the database fails (not for refusals); None if
        the worker stops meanwhile."""
        pause = 0.1
        while True:
            try:
                return work()
            except NotFound:
                raise
            except StoreError as exc:
                log.error("sync: the store failed (%s); trying again in %.1f s", exc, pause)
                if self._stopping.wait(pause):
                    return None
                pause = min(pause * 2, 5.0)

    def _refuse(self, message: mqtt.MQTTMessage, reason: str) -> None:
        self.stats.refused += 1
        log.warning("refused a message on %s: %s", message.topic, reason)

    def _ack(self, message: mqtt.MQTTMessage) -> None:
        self._client.ack(message.mid, message.qos)

    # ---- remote operations (S-SYNC-3) -------------------------------------------------------

    def send(self, car_id: str, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a signed command and wait for its one result: {command_id, ok, code, data}.
        Refused 503 when the broker or the car is known to be unreachable, 504 when the car
        did not answer within `timeout` (the command expires then: a car that gets it later
        refuses it)."""
        if not self._connected.is_set():
            raise Refused(
                503,
                "car_link_unavailable",
                f"car {car_id} cannot be reached: the cloud is not connected to the broker",
                f"車両 {car_id} と通信できません（ブローカーに接続していません）",
            )
        if self.store.car_status(car_id).online is False:
            raise Refused(
                503,
                "car_offline",
                f"car {car_id} is offline; try again when it has signal",
                f"車両 {car_id} はオフラインです。電波の届く場所で再度お試しください",
            )
        now = self.clock().timestamp()
        command = messages.Command(uuid.uuid4().hex, car_id, name, now, now + timeout, dict(args))
        try:
            messages.Command.from_body(command.to_body())
        except messages.MessageError as exc:
            raise Refused(422, "bad_command", f"command {exc}") from None
        waiter = threading.Event()
        self._waiters[command.id] = waiter
        try:
            self.store.add_command(
                command.id,
                car_id,
                name,
                command.args,
                issued_at=command.issued_at,
                expires_at=command.expires_at,
            )
            payload = messages.encode(
                signing.sign(self.key, messages.Command.KIND, command.to_body())
            )
            self._client.publish(topics.topic(car_id, "commands"), payload, qos=topics.QOS)
            deadline = time.monotonic() + timeout
            while True:
                record = self.store.get_command(command.id)
                if record.status == "answered":
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    record = self.store.time_out_command(command.id)
                    break
                waiter.wait(min(remaining, self.config.command_poll))
                waiter.clear()
        finally:
            self._waiters.pop(command.id, None)
        if record.status != "answered" or record.result is None:
            raise Refused(
                504,
                "car_timeout",
                f"car {car_id} did not answer {name} within {timeout:g} s; the command has "
                "expired and will not be carried out",
                f"車両 {car_id} から {timeout:g} 秒以内に応答がありませんでした"
                "（操作は無効になりました）",
                command_id=command.id,
            )
        return _result(record.result)

    def _wake_callers(self, command_ids: list[str]) -> None:
        for command_id in command_ids:
            waiter = self._waiters.get(command_id)
            if waiter is not None:
                waiter.set()


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Small packets out at once: without it a snapshot queued behind the PUBACKs of events
    waits for the broker's delayed ACK (40 ms, Nagle's algorithm), holding its car's row."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _same_car(topic_car: str, payload_car: str) -> None:
    if payload_car != topic_car:
        raise messages.MessageError(
            "car_id", f"the payload says {payload_car!r}, the topic is car {topic_car!r}'s"
        )


def _result(data: dict[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in data.items() if k not in ("command_id", "ok", "code")}
    return {
        "command_id": data.get("command_id"),
        "ok": data.get("ok"),
        "code": data.get("code"),
        "data": rest,
    }

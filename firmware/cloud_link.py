"""The car's link to the cloud over MQTT (paho-mqtt): the `CloudLink` port for `mqtt://` and
`mqtts://` URLs.

In: the car's signed booking snapshot (`reservations`) and signed remote commands (`commands`).
Each is checked before the unit sees it (SPEC X-SEC-1, X-SEC-3): the Ed25519 signature with the
cloud's public key, the message's form, the car ID (ours), the snapshot version (newer than held)
and, for a command, its expiry (by the unit's clock) and its ID (never applied before). Anything
else is refused with one log line and never acted on. A snapshot goes to the runner as
`BookingsChanged`, a command as `RemoteCommand`; the core answers each command with exactly one
`command_result` event (S-SYNC-3). Incoming messages are acknowledged to the broker only once the
runner has committed them, so a unit killed in between gets them again (and applies them once).

Out: the store's outbox as `events` (QoS 1, in sequence order; an event leaves the outbox only
after the broker's PUBACK), the unit's `state` (retained, on every change) and `online` (retained;
the last will says offline). A wrong clock (a message issued far from the unit's time) is logged
and reported once as a `clock_skew` event.

Connections: each connection gets a fresh paho client (client ID = car ID, clean session off, so
the broker queues the car's commands while it is away); the link itself reconnects with
exponential backoff. It keeps no session of its own in memory: on every connection it sends what
the outbox holds, in order. Mosquitto acknowledges a publish before it saves it, so a broker killed
right after a PUBACK can come back without an event the car has already acknowledged: an event
therefore leaves the outbox only `hold` seconds after its PUBACK, and only if that connection
lasted that long; otherwise it is sent again. The cloud drops repeats by event ID (S-SYNC-2).
"""

from __future__ import annotations

import collections
import contextlib
import importlib.metadata
import logging
import os
import queue
import socket
import ssl
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware.bookings import Bookings
from firmware.broker_url import parse_cloud_url
from firmware.inputs import BookingsChanged, ClockSkew, Input, RemoteCommand
from firmware.launcher import ENV_SLOTS
from firmware.ports import Clock, Store, Submit
from firmware.slots import SlotError, Slots
from firmware.store import OutboxEvent
from protocol import messages, signing, topics
from protocol.messages import Command, MessageError, Snapshot

log = logging.getLogger(__name__)

TO_CAR = ("reservations", "commands")  # what the car subscribes to, in this order


def firmware_version() -> str:
    """The release this unit runs: its install slot's version under `kagi unit launch` (what
    the signed release said), else the installed package's."""
    slots = os.environ.get(ENV_SLOTS)
    if slots:
        try:
            installed = Slots(Path(slots))
            return installed.version(installed.running())
        except (OSError, SlotError):
            pass
    try:
        return importlib.metadata.version("kagi")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---- the state topic ----------------------------------------------------------------------------


def state_fields(
    snapshot: dict[str, Any], bookings_version: int, firmware: str, config: int = 0
) -> dict[str, Any]:
    """What the `state` topic says of the car (S-SYNC-4), from the trip state the runner saved."""
    data = snapshot["data"]
    sensors, outputs, trip = data["sensors"], data["outputs"], data.get("trip")
    operator = data.get("operator", {})
    position = sensors.get("position")
    return {
        "trip_state": snapshot["state"],
        "overlay": snapshot["overlay"],
        "reservation_id": trip["reservation_id"] if trip else None,
        "driver_id": trip["driver_id"] if trip else None,
        "doors_open": dict(sensors["doors"]),
        "doors": outputs["doors"],  # "locked", "unlocked", or None before the first command
        "immobilised": outputs["immobilised"],
        # O-CAR-1: what the operator set (absent from a unit's state saved before it existed)
        "operator_immobilised": operator.get("immobilised", False),
        "service_mode": operator.get("service_mode", False),
        "operator_unlocked": operator.get("unlocked", False),
        "key_present": sensors["key_present"],
        "key_position": sensors["key_position"],
        "parking_brake": sensors["brake"],
        "engine_running": sensors["engine"],
        "lights_on": sensors["lights"],
        "fuel_pct": sensors["fuel_pct"],
        "odometer_km": sensors["odometer_km"],
        "position": {"lat": position[0], "lon": position[1]} if position else None,
        "bookings_version": bookings_version,
        "firmware": firmware,
        "config": config,  # O-OTA-4: the fleet configuration it runs (0: none applied)
    }


# ---- the link ---------------------------------------------------------------------------------


def loop_writes(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's `on_socket_register_write`, doing nothing: with it set, a publish or an ack from
    another thread only queues its packet and wakes the loop, which writes it on its own thread
    (cloud-net). Without it paho writes on the caller's thread whenever the loop is not its own
    (`loop_forever` on our thread), and two threads writing one TLS socket garble its records:
    the broker drops the car ("decryption failed or bad record mac")."""


def no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's `on_socket_open`: small packets go out at once. Without TCP_NODELAY a PUBLISH
    written right after a PUBACK waits for the broker's delayed ACK (40 ms on Linux), on every
    command and on its result."""
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(frozen=True)
class LinkSettings:
    """How the link behaves; the unit's configuration sets the first three (`unit.cloud_…`)."""

    max_skew: float = 300.0  # a message issued further than this from the unit's clock: report
    reconnect_max: float = 30.0  # backoff between connection attempts: doubling up to this…
    hold: float = 5.0  # an event leaves the outbox this long after its PUBACK (connection held)
    reconnect_min: float = 1.0  # …from this
    keepalive: int = 30
    window: int = 50  # events in flight at once
    settle: float = 3.0  # messages this soon after connecting may be old (queued, retained)
    connect_timeout: float = 5.0


class MqttCloudLink:
    """The CloudLink port over paho-mqtt: `start(submit)`, `committed(…)` (the `state` topic),
    `outbox_changed()`, `stop()`, `status_fields()`."""

    def __init__(
        self,
        url: str,
        car_id: str,
        cloud_public_key: str,
        store: Store,
        clock: Clock,
        *,
        ca: str = "",
        settings: LinkSettings | None = None,
        firmware: str | None = None,
    ) -> None:
        self.car_id = topics.check_car_id(car_id)
        self.broker = parse_cloud_url(url, car_id)
        self._key = signing.public_key_from_hex(cloud_public_key)
        self._ca = ca
        self.store = store
        self.clock = clock
        self.settings = settings or LinkSettings()
        self.firmware = firmware or firmware_version()
        self.config_version = 0  # the fleet configuration applied (the unit sets it)
        self._topic = {kind: topics.topic(car_id, kind) for kind in topics.KINDS}
        self._submit: Submit | None = None

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        # the connection (network thread writes, under the lock)
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._ready_generation = 0  # the generation whose CONNACK succeeded (0: none)
        self._subscribed_generation = 0  # … whose subscriptions were granted
        self._connected_at = 0.0  # monotonic
        self._last_error = ""
        # what the unit holds (runner thread and network thread, under the lock)
        self._held_version: int | None = None
        self._offered_version = 0
        self._commands_in_progress: set[str] = set()
        self._state: tuple[dict[str, Any], int] | None = None
        self._skew_reported = False
        self._counts: collections.Counter[str] = collections.Counter()
        # the worker's own (only the worker thread touches these)
        self._acks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._pub_generation = 0
        self._in_flight: dict[int, OutboxEvent] = {}  # mid -> event, this generation
        self._holding: dict[str, tuple[float, OutboxEvent]] = {}  # acknowledged, kept a while
        self._published_state: dict[str, Any] | None = None

    # ---- the port ---------------------------------------------------------------------------

    def start(self, submit: Submit) -> None:
        self._submit = submit
        with self._lock:
            if self._held_version is None:
                self._held_version = self.store.load()[1].version
        log.info("cloud link: %s as %s", self.broker.redacted(), self.car_id)
        for name, target in (("cloud-net", self._net), ("cloud-out", self._work)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def outbox_changed(self) -> None:
        self._wake.set()

    def committed(self, snapshot: dict[str, Any], bookings_version: int) -> None:
        """The runner committed a step (on its thread): keep `state` current."""
        with self._lock:
            self._state = (snapshot, bookings_version)
            if self._held_version is None or bookings_version > self._held_version:
                self._held_version = bookings_version
        self._wake.set()

    def stop(self) -> None:
        """Say offline (retained), disconnect, and end the link's threads."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        with self._lock:
            client = self._client if self._ready_generation == self._generation else None
        if client is not None:
            info = client.publish(
                self._topic["online"],
                self._online(False, self.clock.now()),
                qos=topics.QOS,
                retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(1.0)
        with self._lock:
            client = self._client
        if client is not None:
            client.disconnect()
        for thread in self._threads:
            thread.join(self.settings.connect_timeout + 2)
        self._threads.clear()

    def status_fields(self) -> dict[str, Any]:
        return {"cloud": self.status()}

    def status(self) -> dict[str, Any]:
        """For the unit's status view (any thread)."""
        with self._lock:
            connected = self._client is not None and self._ready_generation == self._generation
            # the worker has taken up this connection, nothing is in flight or held
            caught_up = (
                connected
                and self._pub_generation == self._ready_generation
                and not self._in_flight
                and not self._holding
            )
            status = {
                "url": self.broker.redacted(),
                "connected": connected,
                "subscribed": connected and self._subscribed_generation == self._generation,
                "caught_up": caught_up,
                "in_flight": len(self._in_flight),
                "holding": len(self._holding),
                "bookings_version": self._held_version,
                "clock_skew_reported": self._skew_reported,
                "last_error": self._last_error,
                "counts": dict(self._counts),
            }
        # …and the outbox is empty: everything the unit made has reached the broker
        status["caught_up"] = caught_up and not self.store.pending(limit=1)
        return status

    # ---- the connection (thread cloud-net) ---------------------------------------------------

    def _net(self) -> None:
        delay = self.settings.reconnect_min
        while not self._stopping.is_set():
            client = self._new_client()
            try:
                client.connect(self.broker.host, self.broker.port, self.settings.keepalive)
            except (OSError, ssl.SSLError) as exc:  # refused, unreachable, TLS handshake
                self._failed(f"cannot reach {self.broker.redacted()}: {exc}")
            else:
                with self._lock:  # stop() reads _client after it sets _stopping
                    stopping = self._stopping.is_set()
                    if not stopping:
                        self._client = client
                if stopping:
                    client.disconnect()
                    client.loop(0.1)  # sends the DISCONNECT
                    return
                try:
                    client.loop_forever()  # returns when the connection ends
                except Exception:
                    log.exception("cloud link: the connection failed")
                with self._lock:
                    self._client = None
                    was_ready = self._ready_generation == self._generation
                    if was_ready:
                        self._ready_generation = 0
                if was_ready:
                    delay = self.settings.reconnect_min
                    if not self._stopping.is_set():
                        log.warning("cloud link: connection to %s lost", self.broker.redacted())
                    self._wake.set()
            self._stopping.wait(delay)
            delay = min(delay * 2, self.settings.reconnect_max)

    def _failed(self, reason: str) -> None:
        with self._lock:
            repeated = reason == self._last_error
            self._last_error = reason
        # once per distinct reason: a car in a garage must not fill its log with retries
        log.log(logging.DEBUG if repeated else logging.WARNING, "cloud link: %s", reason)

    def _new_client(self) -> mqtt.Client:
        with self._lock:
            self._generation += 1
            generation = self._generation
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.car_id,
            clean_session=False,
            userdata=generation,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.connect_timeout = self.settings.connect_timeout
        client.max_inflight_messages_set(0)  # the link bounds what it has in flight itself
        client.username_pw_set(self.broker.username, self.broker.password or None)
        if self.broker.tls:
            client.tls_set(ca_certs=self._ca or None)
        # the last will is written at connect time: it carries no time
        client.will_set(self._topic["online"], self._online(False), qos=topics.QOS, retain=True)
        client.on_socket_open = no_delay
        client.on_socket_register_write = loop_writes
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        generation: int,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._failed(f"{self.broker.redacted()} refused the connection: {reason}")
            return
        with self._lock:
            self._ready_generation = generation
            self._connected_at = time.monotonic()
            self._last_error = ""
            self._counts["connections"] += 1
        log.info(
            "cloud link: connected to %s (session %s)",
            self.broker.redacted(),
            "resumed" if flags.session_present else "new",
        )
        client.subscribe([(self._topic[kind], topics.QOS) for kind in TO_CAR])
        self._wake.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        generation: int,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [k for k, r in zip(TO_CAR, reasons, strict=False) if r.is_failure]
        for kind in refused:
            log.error("cloud link: the broker refused our subscription to %s", kind)
        if not refused:
            with self._lock:
                self._subscribed_generation = generation

    def _on_publish(
        self,
        client: mqtt.Client,
        generation: int,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._acks.put((generation, mid))  # the worker matches it with what it published
        self._wake.set()

    # ---- in: snapshots and commands (network thread) -----------------------------------------

    def _on_message(self, client: mqtt.Client, generation: int, msg: mqtt.MQTTMessage) -> None:
        try:
            done = self._receive(msg.topic, bytes(msg.payload))
        except Exception:  # a bug here must not take the connection down
            log.exception("cloud link: a message on %s failed", msg.topic)
            done = None
        if done is None:
            self._ack(client, generation, msg)
        else:
            done.add_done_callback(lambda _: self._ack(client, generation, msg))

    def _ack(self, client: mqtt.Client, generation: int, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            current = self._generation == generation and self._client is client
        if current:  # a message of an older connection comes again on the current one
            client.ack(msg.mid, msg.qos)

    def _receive(self, topic: str, payload: bytes) -> Future[Any] | None:
        """Check one message and hand it to the runner; None when there is nothing to wait for."""
        self._count("received")
        try:
            car_id, kind = topics.parse(topic)
        except ValueError as exc:
            return self._refuse(topic, str(exc))
        if car_id != self.car_id or kind not in topics.TO_CAR:
            return self._refuse(topic, "not a topic this car takes")
        cls: type[Snapshot] | type[Command] = Snapshot if kind == "reservations" else Command
        try:
            body = signing.verify(self._key, messages.decode(payload), cls.KIND)
            message = cls.from_body(body)
        except (MessageError, signing.SignatureError) as exc:
            return self._refuse(topic, str(exc))
        if message.car_id != self.car_id:
            return self._refuse(topic, f"car_id: for car {message.car_id!r}, this is {self.car_id}")
        if isinstance(message, Snapshot):
            return self._snapshot(topic, message)
        return self._command(topic, message)

    def _refuse(self, topic: str, reason: str, level: int = logging.WARNING) -> Future[Any] | None:
        """Log why a message is not taken (X-SEC-1, X-SEC-3); nothing is handed to the runner."""
        log.log(level, "cloud link: refused a message on %s: %s", topic, reason[:300])
        self._count("refused")
        return None

    def _snapshot(self, topic: str, snap: Snapshot) -> Future[Any] | None:
        with self._lock:
            held = self._held_version or 0
            offered = max(held, self._offered_version)
        if snap.version <= offered:
            if snap.version == held:  # the retained snapshot again, after every (re)connection
                return self._refuse(topic, f"version {held} is held already", logging.INFO)
            return self._refuse(
                topic, f"version {snap.version} is stale: the car holds version {offered}"
            )
        try:
            bookings = Bookings.from_dict(snap.bookings)
        except ValueError as exc:
            return self._refuse(topic, str(exc))
        self._check_clock(snap.issued_at, f"snapshot (version {snap.version})")
        with self._lock:
            self._offered_version = snap.version
        log.info("cloud link: bookings version %s from the cloud", snap.version)
        self._count("snapshots")
        done = self._deliver(BookingsChanged(bookings))
        done.add_done_callback(lambda f: self._snapshot_done(f, snap.version))
        return done

    def _snapshot_done(self, done: Future[Any], version: int) -> None:
        with self._lock:
            if done.exception() is None:
                self._held_version = max(self._held_version or 0, version)
            else:  # the runner refused it: a later copy may try again
                self._offered_version = self._held_version or 0

    def _command(self, topic: str, cmd: Command) -> Future[Any] | None:
        where = f"{topic}: command {cmd.id} ({cmd.name})"
        with self._lock:
            busy = cmd.id in self._commands_in_progress
        if busy or self.store.command_seen(cmd.id):
            return self._refuse(where, "already received: a command is applied once")
        self._check_clock(cmd.issued_at, f"command {cmd.id}")
        now = self.clock.now()
        if cmd.expires_at <= now:
            return self._refuse(
                where, f"expired at {cmd.expires_at}; the unit's clock says {now:.3f}"
            )
        with self._lock:
            self._commands_in_progress.add(cmd.id)
        log.info("cloud link: command %s (%s) from the cloud", cmd.id, cmd.name)
        self._count("commands")
        done = self._deliver(RemoteCommand(cmd.id, cmd.name, dict(cmd.args)))
        done.add_done_callback(lambda _: self._command_done(cmd.id))
        return done

    def _command_done(self, command_id: str) -> None:
        with self._lock:  # by now the store has it as applied (or the runner refused it)
            self._commands_in_progress.discard(command_id)

    def _deliver(self, event: Input) -> Future[Any]:
        assert self._submit is not None, "the cloud link was not started"
        return self._submit(event)

    def _check_clock(self, issued_at: float, source: str) -> None:
        """A message from the future, or a live one from the past, means a wrong clock here."""
        offset = issued_at - self.clock.now()
        limit = self.settings.max_skew
        with self._lock:
            live = time.monotonic() - self._connected_at > self.settings.settle
            wrong = offset > limit or (live and offset < -limit)
            report = wrong and not self._skew_reported
            agrees = live and abs(offset) <= limit and self._skew_reported
            if report:
                self._skew_reported = True
            elif agrees:
                self._skew_reported = False
        if report:
            log.warning(
                "cloud link: the unit's clock looks wrong: a %s is %+.0f s from the unit's clock "
                "(more than %.0f s); commands are checked against the unit's clock",
                source,
                offset,
                limit,
            )
            self._deliver(ClockSkew(offset, source))
        elif agrees:
            log.info("cloud link: the unit's clock agrees with the cloud's again")

    # ---- out: events, state, online (thread cloud-out) ---------------------------------------

    def _work(self) -> None:
        timeout = 1.0
        while not self._stopping.is_set():
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                timeout = self._service()
            except Exception:  # the store or the client failed: try again a little later
                log.exception("cloud link: sending failed")
                timeout = 1.0

    def _service(self) -> float:
        """Send what is due; how long the worker may sleep if nothing wakes it."""
        self._take_acks()
        with self._lock:
            client, generation = self._client, self._ready_generation
            if generation != self._generation:
                client, generation = None, 0
        if generation != self._pub_generation:
            self._drop_connection_state()
            self._pub_generation = generation
            if client is not None and not self._send(
                client, "online", self._online(True), retain=True
            ):
                return 1.0
        if client is None:
            return 1.0
        self._send_state(client)
        self._send_events(client)
        return self._confirm()

    def _drop_connection_state(self) -> None:
        """The connection the worker sent on is gone: what it had in flight, and what the broker
        acknowledged but may not have saved, stay in the outbox and go out again."""
        if self._holding:
            self._count("events_resent", len(self._holding))
            log.info(
                "cloud link: %d events the broker acknowledged just before the connection was "
                "lost will be sent again",
                len(self._holding),
            )
        self._in_flight.clear()
        self._holding.clear()
        self._published_state = None

    def _take_acks(self) -> None:
        now = time.monotonic()
        while True:
            try:
                generation, mid = self._acks.get_nowait()
            except queue.Empty:
                return
            if generation != self._pub_generation:
                continue  # an older connection's: its events are sent again anyway
            event = self._in_flight.pop(mid, None)
            if event is not None:
                self._holding[event.id] = (now, event)

    def _confirm(self) -> float:
        """Events acknowledged at least `hold` ago on this very connection leave the outbox."""
        now = time.monotonic()
        due = [e for t, e in self._holding.values() if t + self.settings.hold <= now]
        for event in due:
            self.store.acknowledge(event.id)  # the broker has it (and has had time to save it)
            del self._holding[event.id]
        if due:
            self._count("events_sent", len(due))
        if not self._holding:
            return 1.0
        first = min(t for t, _ in self._holding.values())
        return max(0.005, min(1.0, first + self.settings.hold - now))

    def _send_events(self, client: mqtt.Client) -> None:
        room = self.settings.window - len(self._in_flight)
        if room <= 0:
            return
        taken = {e.id for e in self._in_flight.values()} | set(self._holding)
        pending = self.store.pending(limit=room + len(taken))
        for event in [e for e in pending if e.id not in taken][:room]:
            body = messages.Event(
                event.id, self.car_id, event.seq, event.type, event.at, event.data
            ).to_body()
            info = client.publish(self._topic["events"], messages.encode(body), qos=topics.QOS)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # the connection just went: the next one sends it
            self._in_flight[info.mid] = event

    def _send_state(self, client: mqtt.Client) -> None:
        with self._lock:
            state = self._state
        if state is None:
            return
        snapshot, version = state
        fields = state_fields(snapshot, version, self.firmware, self.config_version)
        if fields == self._published_state:
            return
        at = snapshot["data"].get("last_time") or self.clock.now()
        body = messages.State(self.car_id, at, fields).to_body()
        if self._send(client, "state", messages.encode(body), retain=True):
            self._published_state = fields

    def _send(self, client: mqtt.Client, kind: str, payload: bytes, retain: bool) -> bool:
        info = client.publish(self._topic[kind], payload, qos=topics.QOS, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _online(self, online: bool, at: float | None = None) -> bytes:
        if online and at is None:
            at = self.clock.now()
        return messages.encode(messages.Online(self.car_id, online, at).to_body())

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def counts(self) -> dict[str, int]:
        """How many messages came in, were refused, and how many events went out (and again)."""
        with self._lock:
            return dict(self._counts)

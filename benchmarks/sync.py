"""How fast the cloud's sync is, on a private Mosquitto, with the store on SQLite and PostgreSQL:

- reservation → car: from `Cloud.reserve` (the booking rules, the store) to the simulated car
  holding the signed snapshot with it (signature verified), p50 and p99, with 100 and with 1,000
  cars connected, each on its own broker account (SPEC S-SYNC-1 asks for under a second);
- events in: events per second a cloud worker takes from the broker, applies (idempotent by id,
  in the car's order) and acknowledges — plain events, and whole trips (trip_started + trip_ended:
  a trip, an invoice, a mail queued) — with one worker and with two on the shared subscription.

The cars run in a process of their own (as they would: the cloud's threads must not wait for
their Python), as paho clients driven by one thread (`select` over their sockets), so a thousand
cost a thousand sockets, not a thousand threads. Prints one table; `make bench` runs it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import multiprocessing
import selectors
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks._stats import pct
from cloud.auth import Caller
from cloud.mosquitto import CLOUD_USER, Mosquitto
from cloud.pgserver import PgServer
from cloud.policy import default_policy
from cloud.service import Cloud
from cloud.store import Store, open_store
from cloud.sync import CloudSync, SyncConfig, public_key
from protocol import messages, signing, topics

FLEETS = (100, 1000)
SAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else 200  # reservations timed per fleet
EVENT_CARS, EVENTS_PER_CAR, TRIPS_PER_CAR = 100, 20, 2
CLOUD_PASSWORD = "bench-cloud"
POLICY = default_policy()
JST = dt.timezone(dt.timedelta(hours=9))


def car_id(i: int) -> str:
    return f"car-{i:04d}"


class Fleet:
    """Simulated cars: one MQTT client each, all driven by one thread (of the fleet process)."""

    def __init__(
        self,
        host: str,
        port: int,
        n: int,
        key_hex: str,
        first: int = 0,
        outbox: dict[str, list[bytes]] | None = None,
    ) -> None:
        self.key = signing.public_key_from_hex(key_hex)
        # what each car kept while it had no broker: sent as soon as it is connected again
        self.outbox = outbox or {}
        self.selector = selectors.DefaultSelector()
        self.clients: dict[str, mqtt.Client] = {}
        self.writing: set[mqtt.Client] = set()
        self.seen: dict[str, dict[str, float]] = {}  # car → reservation id → first seen
        self.snapshots = 0
        self.ready = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        for i in range(first, first + n):
            self._add(host, port, car_id(i))

    def _add(self, host: str, port: int, car: str) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{car}")
        client.username_pw_set(car, f"pw-{car}")
        client.on_connect = lambda c, u, f, rc, p, car=car: self._connected(c, car)
        client.on_subscribe = lambda *a: self._subscribed()
        client.on_message = lambda c, u, m, car=car: self._snapshot(car, m)
        client.on_socket_open = lambda c, u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        client.on_socket_register_write = lambda c, u, sock: self.writing.add(c)
        client.on_socket_unregister_write = lambda c, u, sock: self.writing.discard(c)
        self.seen[car] = {}
        client.connect(host, port, keepalive=120)
        self.clients[car] = client
        self.selector.register(client.socket(), selectors.EVENT_READ, client)

    def _connected(self, client: mqtt.Client, car: str) -> None:
        client.subscribe(topics.topic(car, "reservations"), 1)
        for payload in self.outbox.pop(car, ()):
            client.publish(topics.topic(car, "events"), payload, qos=1)

    def _subscribed(self) -> None:
        self.ready += 1

    def _snapshot(self, car: str, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()  # CLOCK_MONOTONIC: comparable with the cloud process's
        wire = messages.decode(bytes(message.payload))
        snapshot = messages.Snapshot.from_body(
            signing.verify(self.key, wire, messages.Snapshot.KIND)
        )
        seen = self.seen[car]
        for r in snapshot.bookings["reservations"]:
            seen.setdefault(r["id"], now)
        self.snapshots += 1

    def _loop(self) -> None:
        last_misc = time.monotonic()
        while not self.stop.is_set():
            if not self.clients:
                time.sleep(0.01)
                continue
            for key, _ in self.selector.select(0.01):
                key.data.loop_read()
            for client in list(self.writing):
                client.loop_write()
            if time.monotonic() - last_misc > 1.0:
                last_misc = time.monotonic()
                for client in list(self.clients.values()):
                    client.loop_misc()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for client in self.clients.values():
            client.disconnect()
            client.loop_write()


def fleet_process(
    conn: Connection,
    host: str,
    port: int,
    n: int,
    key_hex: str,
    first: int = 0,
    outbox: dict[str, list[bytes]] | None = None,
) -> None:
    """The cars, in a process of their own (as cars are): answers the benchmark's questions."""
    fleet = Fleet(host, port, n, key_hex, first, outbox)
    while True:
        ask = conn.recv()
        if ask[0] == "status":
            conn.send((fleet.ready, fleet.snapshots))
        elif ask[0] == "seen":  # when `car` first held reservation `rid`
            _, car, rid, timeout = ask
            deadline = time.monotonic() + timeout
            while rid not in fleet.seen[car] and time.monotonic() < deadline:
                time.sleep(0.0002)
            conn.send(fleet.seen[car].get(rid))
        elif ask[0] == "publish":
            for car, payload in ask[1]:
                fleet.clients[car].publish(topics.topic(car, "events"), payload, qos=1)
            conn.send(True)
        else:
            fleet.close()
            conn.send(True)
            return


class Cars:
    """The benchmark's handle on the fleet process."""

    def __init__(
        self,
        broker: Mosquitto,
        n: int,
        key_hex: str,
        first: int = 0,
        outbox: dict[str, list[bytes]] | None = None,
    ) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("spawn").Process(
            target=fleet_process,
            args=(child, broker.host, broker.port, n, key_hex, first, outbox),
            daemon=True,
        )
        self.proc.start()

    def ask(self, *question: Any) -> Any:
        self.conn.send(question)
        return self.conn.recv()

    def close(self) -> None:
        if self.proc.is_alive():
            self.ask("close")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def wait(check: Callable[[], bool], timeout: float, what: str, every: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmarks.sync: {what} did not happen within {timeout} s")
        time.sleep(every)


def setup(db: Store, cars: int, drivers: int) -> None:
    with db.batch():
        db.add_station("s", name="S", lat=36.0, lon=140.0, radius_m=50)
        for i in range(cars):
            db.add_car(car_id(i), station_id="s")
        for m in range(drivers // 10 + 1):
            db.add_member(f"BEN{m:05d}", name=f"M{m}")
        for d in range(drivers):
            db.add_driver(driver_id(d), name="D", email="d@example.jp",
                          licence_expiry=dt.date(2035, 1, 1))  # fmt: skip


def driver_id(d: int) -> str:
    return f"BEN{d // 10:05d}{d % 10:03d}"


def applied(db: Store) -> int:
    """Events applied in order, over every car (each car's sequence starts at 1)."""
    return sum(s.event_seq for s in db.list_car_status())


def propagation(cars: int, folder: Path) -> dict[str, Any]:
    """p50/p99 of reservation → car with `cars` connected cars."""
    db = open_store(str(folder / f"prop-{cars}.db"))
    setup(db, cars, SAMPLES)
    accounts = {CLOUD_USER: CLOUD_PASSWORD, **{car_id(i): f"pw-{car_id(i)}" for i in range(cars)}}
    with Mosquitto(accounts) as broker:
        config = SyncConfig(f"mqtt://{broker.host}:{broker.port}", password=CLOUD_PASSWORD,
                            worker=f"bench-{uuid.uuid4().hex[:6]}")  # fmt: skip
        with CloudSync(db, POLICY, config) as sync:
            fleet = Cars(broker, cars, public_key(db))
            try:
                wait(lambda: fleet.ask("status")[0] == cars, 60, "every car subscribed", 0.05)
                wait(lambda: fleet.ask("status")[1] >= cars, 60, "every first snapshot", 0.05)
                cloud = Cloud(db, POLICY, lambda: dt.datetime.now(dt.UTC), cars=sync)
                now = dt.datetime.now(JST)
                base = now.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
                ms = []
                for k in range(SAMPLES):
                    car = car_id((k * 7919) % cars)
                    who = driver_id(k)
                    start = base + dt.timedelta(hours=k)  # an hour apart: within every buffer
                    t0 = time.perf_counter()
                    view = cloud.reserve(Caller(who, "driver", who[:8]), car, start,
                                         start + dt.timedelta(minutes=30))  # fmt: skip
                    seen = fleet.ask("seen", car, view.reservation.reservation_id, 5.0)
                    if seen is None:
                        raise SystemExit(f"benchmarks.sync: car {car} never got its reservation")
                    ms.append((seen - t0) * 1000)
            finally:
                fleet.close()
    db.close()
    return {"p50": pct(ms, 0.5), "p99": pct(ms, 0.99), "max": max(ms), "n": len(ms)}


def ingest(workers: int, trips: bool, url: str) -> dict[str, Any]:
    """Events per second from `EVENT_CARS` cars into `workers` cloud workers on `url`."""
    db = open_store(url)
    setup(db, EVENT_CARS, EVENT_CARS)
    payloads: list[tuple[str, bytes]] = []
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    for i in range(EVENT_CARS):
        car, seq = car_id(i), 0
        for t in range(TRIPS_PER_CAR if trips else 0):
            begin = start + dt.timedelta(hours=3 * t)
            r = db.create_reservation(
                car_id=car, driver_id=driver_id(i), start=begin,
                end=begin + dt.timedelta(hours=1), buffer_minutes=30,
            )  # fmt: skip
            for kind, at, data in (
                ("trip_started", begin, {"by": "card"}),
                ("trip_ended", begin + dt.timedelta(minutes=50),
                 {"by": "card", "odometer_km": 100.0 + t, "fuel_pct": 50.0}),
            ):  # fmt: skip
                seq += 1
                body = {"reservation_id": r.reservation_id, "driver_id": driver_id(i), **data}
                event = messages.Event(uuid.uuid4().hex, car, seq, kind, at.timestamp(), body)
                payloads.append((car, messages.encode(event.to_body())))
        for _ in range(0 if trips else EVENTS_PER_CAR):
            seq += 1
            event = messages.Event(uuid.uuid4().hex, car, seq, "key_taken", time.time(), {})
            payloads.append((car, messages.encode(event.to_body())))
    accounts = {CLOUD_USER: CLOUD_PASSWORD,
                **{car_id(i): f"pw-{car_id(i)}" for i in range(EVENT_CARS)}}  # fmt: skip
    stores = [db] + [open_store(url, migrate=False) for _ in range(workers - 1)]
    watch = open_store(url, migrate=False)
    with Mosquitto(accounts) as broker:
        syncs = [
            CloudSync(s, POLICY, SyncConfig(f"mqtt://{broker.host}:{broker.port}",
                                            password=CLOUD_PASSWORD, worker=f"bench-w{w}"))
            for w, s in enumerate(stores)
        ]  # fmt: skip
        for s in syncs:
            s.start()
            wait(lambda s=s: s.connected, 10, "the worker connecting")
        fleet = Cars(broker, EVENT_CARS, public_key(db))
        try:
            wait(lambda: fleet.ask("status")[0] == EVENT_CARS, 30, "every car subscribed", 0.05)
            time.sleep(0.2)
            t0 = time.perf_counter()
            fleet.ask("publish", payloads)
            wait(lambda: applied(watch) >= len(payloads), 120, "ingest", every=0.01)
            took = time.perf_counter() - t0
        finally:
            fleet.close()
            for s in syncs:
                s.stop()
    if trips:
        assert len(db.list_notifications(kind="trip_ended")) == EVENT_CARS * TRIPS_PER_CAR
    for s in [*stores, watch]:
        s.close()
    return {"events": len(payloads), "seconds": took, "per_s": len(payloads) / took}


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="kagi-bench-sync-") as tmp:
        folder = Path(tmp)
        print("reservation → car (Cloud.reserve to the car holding the verified snapshot)")
        print(f"{'cars connected':>15} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for cars in FLEETS:
            r = propagation(cars, folder)
            print(f"{cars:>15} {r['n']:>8} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['max']:>8.1f}")
        print()
        print(f"events in ({EVENT_CARS} cars; each applied once, in order, then acknowledged)")
        print(f"{'store':>10} {'events':>24} {'workers':>8} {'count':>6} {'s':>6} {'per s':>7}")
        runs = itertools.count()

        def row(store: str, url: Callable[[], str]) -> None:
            for trips in (False, True):
                for workers in (1, 2):
                    r = ingest(workers, trips, url())
                    what = "whole trips (2 per trip)" if trips else "plain (key_taken)"
                    print(f"{store:>10} {what:>24} {workers:>8} {r['events']:>6} "
                          f"{r['seconds']:>6.2f} {r['per_s']:>7.0f}")  # fmt: skip

        row("SQLite", lambda: str(folder / f"ingest-{next(runs)}.db"))
        with PgServer(durable=True) as pg:
            row("PostgreSQL", lambda: pg.create_database(f"ingest_{next(runs)}"))


if __name__ == "__main__":
    main()

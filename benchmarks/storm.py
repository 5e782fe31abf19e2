"""The reconnect storm (issue 15): the broker restarts while every car holds two hours of events
in its outbox, and all of them come back at once.

On PostgreSQL (durable: fsync on) and Mosquitto (persistent), with 1, 2 and 4 cloud workers on
the shared subscription. Each car's outbox is a realistic two hours: one whole trip (started,
key taken, key returned, ended: a trip, an invoice, a mail) and a few taps of other drivers'
cards refused. The cloud's workers are connected; the broker stops and starts again (keeping its
sessions); the workers reconnect; then every car connects at the same moment and sends its
outbox. Each worker runs in a process of its own, as each cloud node does. Measured: the time
until every car is connected again, and until every event is applied — then checked: none lost,
none applied twice (each event id kept once, and each trip has one invoice), and how many were
applied after a later event of their car (a gap given up on before it filled: none should be).
Goal: drained in ≤ 2 minutes. Prints, never asserts.
`python -m benchmarks.storm [CARS] [WORKERS…]` (default 10,000 cars; 1 2 4 workers).
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import sys
import time
import uuid
from multiprocessing.connection import Connection

from benchmarks.fleet_10k import Fleets
from benchmarks.sync import (
    CLOUD_PASSWORD,
    POLICY,
    car_id,
    driver_id,
    setup,
    wait,
)
from cloud.mosquitto import CLOUD_USER, Mosquitto
from cloud.pgserver import PgServer
from cloud.store import Store, open_store
from cloud.sync import CloudSync, SyncConfig, public_key
from protocol import messages

CARS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
WORKERS = tuple(int(w) for w in sys.argv[2:]) or (1, 2, 4)
DENIED = 2  # other drivers' cards tapped and refused, per car


def outboxes(db: Store) -> tuple[dict[str, list[bytes]], int]:
    """Each car's two hours: its trip (a reservation of its own) and refused taps."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    boxes: dict[str, list[bytes]] = {}
    with db.batch():
        for i in range(CARS):
            car, who = car_id(i), driver_id(i)
            end = start + dt.timedelta(hours=2)
            r = db.create_reservation(
                car_id=car, driver_id=who, start=start, end=end, buffer_minutes=30
            )
            rid = {"reservation_id": r.reservation_id, "driver_id": who}
            trip = [
                ("trip_started", 0, {**rid, "by": "card"}),
                ("key_taken", 3, {**rid, "position": "lend"}),
                *(("card_denied", 10 + k, {"card": f"{k:064x}", "reason": "no_reservation"})
                  for k in range(DENIED)),
                ("key_returned", 100, {**rid, "position": "return"}),
                ("trip_ended", 110, {**rid, "by": "card", "odometer_km": 142.0, "fuel_pct": 60.0}),
            ]  # fmt: skip
            boxes[car] = [
                messages.encode(messages.Event(
                    uuid.uuid4().hex, car, seq, kind,
                    (start + dt.timedelta(minutes=minutes)).timestamp(), data,
                ).to_body())
                for seq, (kind, minutes, data) in enumerate(trip, start=1)
            ]  # fmt: skip
    return boxes, sum(map(len, boxes.values()))


class Worker:
    """One cloud sync worker in a process of its own, as each cloud node runs it: workers in
    one process would share its interpreter lock and not scale."""

    def __init__(self, url: str, broker: str, name: str) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("spawn").Process(
            target=worker_process, args=(child, url, broker, name), daemon=True
        )
        self.proc.start()

    @property
    def connected(self) -> bool:
        self.conn.send("connected")
        return bool(self.conn.recv())

    def stop(self) -> None:
        if self.proc.is_alive():
            self.conn.send("stop")
            self.conn.recv()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def worker_process(conn: Connection, url: str, broker: str, name: str) -> None:
    logging.basicConfig(level=logging.ERROR)
    with open_store(url, migrate=False) as store:
        sync = CloudSync(store, POLICY, SyncConfig(broker, password=CLOUD_PASSWORD, worker=name))
        with sync:
            while conn.recv() == "connected":
                conn.send(sync.connected)
        conn.send(True)


def storm(pg: PgServer, template: str, workers: int) -> dict[str, float]:
    url = pg.create_database(f"storm_{workers}_{uuid.uuid4().hex[:6]}", template=template)
    db = open_store(url, migrate=False)
    boxes, events = outboxes(db)
    accounts = {CLOUD_USER: CLOUD_PASSWORD, **{car_id(i): f"pw-{car_id(i)}" for i in range(CARS)}}
    broker = Mosquitto(accounts, persistence=True).start()
    syncs = [Worker(url, broker.url, f"storm-{w}") for w in range(workers)]
    fleets = None
    try:
        for s in syncs:
            wait(lambda s=s: s.connected, 30, "a worker connecting", 0.01)
        broker.stop()  # the broker restarts (saving its sessions); the cars keep their events
        time.sleep(1)
        broker.start()
        t0 = time.monotonic()
        for s in syncs:
            wait(lambda s=s: s.connected, 60, "a worker reconnecting", 0.01)
        fleets = Fleets(broker, CARS, public_key(db), outbox=boxes)  # all of them at once
        wait(lambda: fleets.status()[0] >= CARS, 600, "every car back", 0.2)
        back = time.monotonic() - t0
        wait(lambda: applied_sql(url) >= events, 1200, "every event applied", 0.5)
        drained = time.monotonic() - t0
        trips = db.list_notifications(kind="trip_ended")
        kept = db.car_events()
        lost = events - sum(1 for e in kept if e.applied_at is not None)
        twice = len(kept) - events  # the same event id is kept once: a repeat would show here
        disorder = out_of_order(url)
        invoices = len({i.reservation_id for s in db.list_members()
                        for i in db.list_invoices(s.member_id)})  # fmt: skip
    finally:
        if fleets is not None:
            fleets.close()
        for s in syncs:
            s.stop()
        broker.close()
        db.close()
        pg.drop_database(url.rsplit("/", 1)[-1])
    return {
        "events": events, "back": back, "drained": drained, "per_s": events / drained,
        "lost": lost, "twice": twice, "disorder": disorder, "trips": len(trips),
        "invoices": invoices,
    }  # fmt: skip


def applied_sql(url: str) -> int:
    """Events applied in order over every car, asked of the database at little cost (the
    benchmark must not take the cores the workers need)."""
    return _number(url, "SELECT coalesce(sum(event_seq), 0) FROM car_sync")


def out_of_order(url: str) -> int:
    """Events applied after a later event of their car (a gap given up on before it filled)."""
    return _number(
        url,
        "SELECT count(*) FROM car_events e WHERE EXISTS (SELECT 1 FROM car_events l "
        "WHERE l.car_id = e.car_id AND l.seq > e.seq AND l.applied_at < e.applied_at)",
    )


def _number(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with PgServer(durable=True) as pg:
        template = f"storm_template_{uuid.uuid4().hex[:6]}"
        with open_store(pg.create_database(template)) as db:
            setup(db, CARS, CARS)
        print(f"reconnect storm: {CARS:,} cars come back at once with 2 hours of events each "
              "(PostgreSQL durable, Mosquitto persistent)")  # fmt: skip
        print("| workers | events | every car back | every event applied | events/s | lost | "
              "applied twice | out of order | trips → invoices | goal |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for workers in WORKERS:
            r = storm(pg, template, workers)
            print(f"| {workers} | {r['events']:,} | {r['back']:.0f} s | {r['drained']:.0f} s | "
                  f"{r['per_s']:.0f} | {r['lost']} | {r['twice']} | {r['disorder']} | "
                  f"{r['trips']:,} → "
                  f"{r['invoices']:,} | ≤ 120 s |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

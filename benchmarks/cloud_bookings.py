"""Bookings per second with every rule check (C-*), through the cloud's booking service and
through the HTTP API, on SQLite and on a real PostgreSQL server (fsync on). Prints one table.

Each booking loads the car's, the driver's and the member's live reservations, runs the rules,
and writes through the store's own atomic checks, as `POST /v1/reservations` does.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from cloud.auth import Caller, hash_password
from cloud.pgserver import PgServer
from cloud.policy import default_policy
from cloud.server import ApiThread
from cloud.service import Cloud
from cloud.store import Store, open_store

BOOKINGS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
CARS, MEMBERS, DRIVERS_PER_MEMBER = 20, 50, 2  # members stay under C-MAX-1's 15
JST = dt.timezone(dt.timedelta(hours=9))
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=JST)


def fleet(store: Store) -> list[str]:
    store.add_station("st", name="Station", lat=35.0, lon=139.0, radius_m=50)
    for c in range(CARS):
        store.add_car(f"car-{c:02d}", station_id="st")
    drivers = []
    secret = hash_password("pw")
    for m in range(MEMBERS):
        member = f"BEN{m:05d}"
        store.add_member(member, name=member)
        for d in range(DRIVERS_PER_MEMBER):
            driver = f"{member}{d:03d}"
            store.add_driver(driver, name=driver, email=f"{driver}@example.jp",
                             licence_expiry=dt.date(2031, 1, 1))  # fmt: skip
            store.set_password_hash(driver, secret)
            drivers.append(driver)
    return drivers


def slots(drivers: list[str]) -> list[tuple[str, str, dt.datetime]]:
    """Bookings that all pass: 2 h each, every car booked in 3-hour blocks (30-minute buffers
    kept), drivers taking turns."""
    out = []
    for i in range(BOOKINGS):
        start = NOW + dt.timedelta(days=1, hours=3 * (i // CARS))
        out.append((drivers[i % len(drivers)], f"car-{i % CARS:02d}", start))
    return out


def run(
    store: Store, book: Callable[[str, str, dt.datetime], None], drivers: list[str]
) -> list[float]:
    times = []
    for driver, car, start in slots(drivers):
        t0 = time.perf_counter()
        book(driver, car, start)
        times.append(time.perf_counter() - t0)
    return times


def service_bench(url: str) -> list[float]:
    store = open_store(url, clock=lambda: NOW)
    drivers = fleet(store)
    cloud = Cloud(store, default_policy(), lambda: NOW)

    def book(driver: str, car: str, start: dt.datetime) -> None:
        caller = Caller(driver, "driver", driver[:8])
        cloud.reserve(caller, car, start, start + dt.timedelta(hours=2))

    try:
        return run(store, book, drivers)
    finally:
        store.close()


def http_bench(url: str) -> list[float]:
    store = open_store(url, clock=lambda: NOW)
    drivers = fleet(store)
    with (
        ApiThread(store, default_policy(), lambda: NOW) as api,
        httpx.Client(base_url=api.url) as http,
    ):
        tokens = {}
        for d in drivers:
            r = http.post("/v1/login", json={"account_id": d, "password": "pw"})
            tokens[d] = r.json()["token"]

        def book(driver: str, car: str, start: dt.datetime) -> None:
            end = start + dt.timedelta(hours=2)
            r = http.post(
                "/v1/reservations",
                json={"car_id": car, "start": start.isoformat(), "end": end.isoformat()},
                headers={"Authorization": f"Bearer {tokens[driver]}"},
            )
            assert r.status_code == 201, r.text

        try:
            return run(store, book, drivers)
        finally:
            store.close()


def row(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    rate = len(times) / sum(times)
    p50 = statistics.median(ms)
    return f"| {name:<22} | {len(times):>5} | {rate:>9.0f} | {p50:>7.2f} | {p99:>7.2f} |"


def main() -> None:
    print(f"cloud bookings with all rule checks ({BOOKINGS} bookings, {CARS} cars, "
          f"{MEMBERS * DRIVERS_PER_MEMBER} drivers, one client)")  # fmt: skip
    print("| path                   | count | booking/s | p50 ms  | p99 ms  |")
    print("|------------------------|-------|-----------|---------|---------|")
    with tempfile.TemporaryDirectory() as tmp:
        print(row("service, SQLite", service_bench(str(Path(tmp) / "a.db"))))
        print(row("HTTP API, SQLite", http_bench(str(Path(tmp) / "b.db"))))
    with PgServer(durable=True) as pg:
        print(row("service, PostgreSQL", service_bench(pg.create_database("bench_a"))))
        print(row("HTTP API, PostgreSQL", http_bench(pg.create_database("bench_b"))))


if __name__ == "__main__":
    main()

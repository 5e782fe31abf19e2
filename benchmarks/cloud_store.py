"""How fast the cloud's store books: create_reservation with its integrity checks (C-CAR-1 car
buffer, C-DRV-1 driver overlap) and its history row, one transaction each, on SQLite (WAL,
synchronous=FULL) and on PostgreSQL (a throwaway server of our own, fsync on). Also refused
bookings (the conflict path) and several processes booking at once. Prints one table; `make
bench` runs it. The bookings per second with every rule of the policy come with the API.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud.pgserver import PgServer
from cloud.store import Conflict, Store, open_store

N = int(sys.argv[1]) if len(sys.argv) > 1 else 400  # bookings per measurement
CARS, DRIVERS, WORKERS = 20, 50, 4
T = dt.datetime(2027, 4, 1, 0, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def setup(url: str) -> None:
    with open_store(url) as db, db.batch():
        db.add_station("s", name="S", lat=36.0, lon=140.0, radius_m=50)
        for c in range(CARS):
            db.add_car(f"car-{c:03d}", station_id="s")
        for m in range(DRIVERS):
            db.add_member(f"BEN{m:05d}", name=f"M{m}")
            db.add_driver(f"BEN{m:05d}001", name="D", email="d@example.jp", licence_expiry=None)


def request(k: int) -> dict[str, Any]:
    """The k-th booking: a car and a driver free at that time (20 cars side by side, 3 h apart)."""
    start = T + (k // CARS) * 3 * H
    return {
        "car_id": f"car-{k % CARS:03d}",
        "driver_id": f"BEN{k % DRIVERS:05d}001",
        "start": start,
        "end": start + 2 * H,
        "buffer_minutes": 30,
    }


def timed(calls: list[Callable[[], object]]) -> list[float]:
    ms = []
    for call in calls:
        t = time.perf_counter()
        call()
        ms.append((time.perf_counter() - t) * 1000)
    return ms


def booking(db: Store, k: int) -> Callable[[], object]:
    return lambda: db.create_reservation(**request(k))


def refused(db: Store, k: int) -> Callable[[], object]:
    def call() -> None:
        try:
            db.create_reservation(**request(k))
        except Conflict:
            return
        raise AssertionError(f"booking {k} was not refused")

    return call


def booker(url: str, first: int, count: int, barrier: Any) -> None:
    with open_store(url, migrate=False) as db:
        barrier.wait()
        for k in range(first, first + count):
            db.create_reservation(**request(k))


def parallel(url: str, first: int) -> float:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WORKERS + 1)
    share = N // WORKERS
    procs = [
        ctx.Process(target=booker, args=(url, first + w * share, share, barrier))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    t = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit("a parallel booker failed")
    return share * WORKERS / elapsed


Row = tuple[str, str, int, float, float | None, float | None]


def measure(backend: str, url: str) -> list[Row]:
    setup(url)
    rows: list[Row] = []
    with open_store(url, migrate=False) as db:
        ms = timed([booking(db, k) for k in range(N)])
        rows.append((backend, "book (accepted)", N, *summary(ms)))
        ms = timed([refused(db, k) for k in range(N)])
        rows.append((backend, "book (refused)", N, *summary(ms)))
    per_s = parallel(url, first=N * 10)
    rows.append((backend, f"book, {WORKERS} processes", N, per_s, None, None))
    return rows


def summary(ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return 1000 * len(ms) / sum(ms), statistics.median(ms), p99


def main() -> None:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += measure("sqlite", str(Path(tmp) / "bench.db"))
    with PgServer(durable=True) as pg:
        start = pg.timings
        rows += measure("postgresql", pg.create_database("bench"))
    print(f"{'backend':<12}{'operation':<22}{'n':>6}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for backend, op, n, per_s, p50, p99 in rows:
        ms = "".join("        -" if x is None else f"{x:>9.2f}" for x in (p50, p99))
        print(f"{backend:<12}{op:<22}{n:>6}{per_s:>9.0f}{ms}")
    print(
        f"(one transaction per booking incl. both checks and the history row; PostgreSQL "
        f"{pg.bin_dir.parent.name} with fsync on, server ready in "
        f"{start['initdb_s'] + start['start_s']:.2f} s: initdb {start['initdb_s']:.2f} s, "
        f"start {start['start_s']:.2f} s)"
    )


if __name__ == "__main__":
    main()

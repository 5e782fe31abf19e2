"""Eight processes race to book the same car (and the same driver), on SQLite and PostgreSQL:
exactly one booking per conflict wins and every other gets the typed Conflict.

Each worker opens its own store (its own connection, as separate cloud workers would), all wait
at a barrier, then book at once. Several rounds, each a fresh conflict, and a private booking per
worker that conflicts with nothing, which must always win.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue
from itertools import combinations
from typing import Any

import pytest

from cloud.store import CAR_BUFFER, DRIVER_OVERLAP, Conflict, Store, open_store

WORKERS = 8
ROUNDS = 3
BUFFER = 30
T = dt.datetime(2027, 1, 10, 1, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
SHARED = "XXY00009001"  # the driver everyone books for in the driver race


def driver(i: int) -> str:
    return f"XXY0000{i}001"


def setup_fleet(url: str) -> None:
    with open_store(url, migrate=False) as db, db.batch():
        db.add_station("s", name="S", lat=36.0, lon=140.0, radius_m=50)
        for i in range(WORKERS + 1):
            db.add_car(f"car-{i}", station_id="s")
        for i in range(WORKERS):
            db.add_member(f"XXY0000{i}", name=f"M{i}")
            db.add_driver(driver(i), name=f"D{i}", email=f"d{i}@example.jp", licence_expiry=None)
        db.add_member("XXY00009", name="Shared")
        db.add_driver(SHARED, name="S", email="s@example.jp", licence_expiry=None)


def worker(url: str, barrier: Any, jobs: list[tuple[str, dict[str, Any]]], out: Any) -> None:
    store = open_store(url, migrate=False)
    try:
        for label, request in jobs:
            if label.startswith("contested"):
                barrier.wait(timeout=60)
            try:
                r = store.create_reservation(buffer_minutes=BUFFER, **request)
                out.put((label, "won", r.reservation_id))
            except Conflict as exc:
                out.put((label, exc.reason, str(exc)))
            except Exception as exc:
                out.put((label, "error", repr(exc)))
    finally:
        store.close()


def race(url: str, jobs_of) -> list[tuple[str, str, str]]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WORKERS)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(url, barrier, jobs_of(i), out)) for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    results = []
    expected = sum(len(jobs_of(i)) for i in range(WORKERS))
    try:
        for _ in range(expected):
            results.append(out.get(timeout=60))
    except queue.Empty:
        pytest.fail(f"the workers answered only {len(results)} of {expected} bookings")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * WORKERS
    return results


def outcomes(results, label: str) -> list[str]:
    return sorted(outcome for lab, outcome, _ in results if lab == label)


def assert_rules_hold(db: Store) -> None:
    live = db.list_reservations(statuses=["reserved", "in_use"])
    for a, b in combinations(live, 2):
        if a.car_id == b.car_id:  # C-CAR-1: at least the buffer between them
            assert a.end + BUFFER * M <= b.start or b.end + BUFFER * M <= a.start, (a, b)
        if a.driver_id == b.driver_id:  # C-DRV-1: no overlap
            assert a.end <= b.start or b.end <= a.start, (a, b)


def test_eight_processes_race_for_one_car(db_url: str):
    # SPEC C-CAR-1: one car, eight workers booking slots within each other's buffer at once
    setup_fleet(db_url)

    def jobs(i: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for k in range(ROUNDS):
            day = T + k * 24 * H
            start = day + i * 15 * M  # all eight slots overlap pairwise
            out.append(
                (f"contested-{k}", {"car_id": "car-0", "driver_id": driver(i), "start": start,
                                    "end": start + 2 * H})
            )  # fmt: skip
            private = day + 12 * H
            out.append(
                (f"private-{k}", {"car_id": f"car-{i + 1}", "driver_id": driver(i),
                                  "start": private, "end": private + H})
            )  # fmt: skip
        return out

    results = race(db_url, jobs)
    assert not [r for r in results if r[1] == "error"], results
    for k in range(ROUNDS):
        assert outcomes(results, f"contested-{k}") == ["car_buffer"] * (WORKERS - 1) + ["won"]
        assert outcomes(results, f"private-{k}") == ["won"] * WORKERS
    losers = [msg for lab, outcome, msg in results if outcome == CAR_BUFFER]
    assert all("reservation" in msg for msg in losers)
    with open_store(db_url, migrate=False) as db:
        assert len(db.list_reservations(car_id="car-0")) == ROUNDS
        assert len(db.list_reservations()) == ROUNDS * (1 + WORKERS)
        assert_rules_hold(db)


def test_eight_processes_race_for_one_driver(db_url: str):
    # SPEC C-DRV-1: one driver, eight workers booking overlapping times on eight cars at once
    setup_fleet(db_url)

    def jobs(i: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for k in range(ROUNDS):
            start = T + k * 24 * H + i * 15 * M
            out.append(
                (f"contested-{k}", {"car_id": f"car-{i}", "driver_id": SHARED, "start": start,
                                    "end": start + 2 * H})
            )  # fmt: skip
        return out

    results = race(db_url, jobs)
    assert not [r for r in results if r[1] == "error"], results
    for k in range(ROUNDS):
        assert outcomes(results, f"contested-{k}") == [DRIVER_OVERLAP] * (WORKERS - 1) + ["won"]
    with open_store(db_url, migrate=False) as db:
        assert len(db.list_reservations(driver_id=SHARED)) == ROUNDS
        assert_rules_hold(db)

"""What only PostgreSQL adds: the exclusion constraints hold C-CAR-1 and C-DRV-1 even for a
writer that skips the store's own checks; and the throwaway server starts, serves and cleans up.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time

import psycopg
import pytest

from cloud.pgserver import PgServer, PgServerError, find_bin_dir
from cloud.store import CAR_BUFFER, DRIVER_OVERLAP, Conflict, open_store
from cloud.store.base import Store

T = dt.datetime(2027, 2, 1, 1, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


@pytest.fixture
def pg_db(pg_server: PgServer, clock):
    name = "constraints"
    url = pg_server.create_database(name, template="kagi_template")
    store = open_store(url, clock=clock, migrate=False)
    store.add_station("s", name="S", lat=36.0, lon=140.0, radius_m=50)
    store.add_car("car-1", station_id="s")
    store.add_car("car-2", station_id="s")
    store.add_member("XXY00001", name="M")
    for d in ("XXY00001001", "XXY00001002"):
        store.add_driver(d, name="D", email="d@example.jp", licence_expiry=None)
    yield store, url
    store.close()
    pg_server.drop_database(name)


def test_the_constraints_hold_without_the_stores_checks(pg_db, monkeypatch):
    # SPEC C-CAR-1, C-DRV-1: a second worker that skips the check is still stopped
    store, _ = pg_db
    store.create_reservation(
        car_id="car-1", driver_id="XXY00001001", start=T, end=T + 2 * H, buffer_minutes=30
    )
    monkeypatch.setattr(Store, "_check_free", lambda *args, **kwargs: None)
    with pytest.raises(Conflict) as err:
        store.create_reservation(
            car_id="car-1",
            driver_id="XXY00001002",
            start=T + 2 * H + 29 * M,
            end=T + 4 * H,
            buffer_minutes=30,
        )
    assert err.value.reason == CAR_BUFFER
    with pytest.raises(Conflict) as err:
        store.create_reservation(
            car_id="car-2", driver_id="XXY00001001", start=T + H, end=T + 3 * H, buffer_minutes=30
        )
    assert err.value.reason == DRIVER_OVERLAP
    # exactly the buffer apart: the slots touch and do not overlap
    store.create_reservation(
        car_id="car-1", driver_id="XXY00001002", start=T + 2 * H + 30 * M, end=T + 4 * H,
        buffer_minutes=30,
    )  # fmt: skip
    assert len(store.list_reservations()) == 2


def test_raw_sql_cannot_double_book_or_fake_a_slot(pg_db):
    _, url = pg_db
    insert = (
        "INSERT INTO reservations (reservation_id, car_id, driver_id, member_id, starts_at, "
        "ends_at, buffer_minutes, slot_start, slot_end, status, created_at, updated_at) "
        "VALUES (%s, 'car-1', %s, 'XXY00001', %s, %s, 30, %s, %s, 'reserved', now(), now())"
    )
    half = 15 * M
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(insert, ("a", "XXY00001001", T, T + H, T - half, T + H + half))
        with pytest.raises(psycopg.errors.ExclusionViolation, match="reservations_car_buffer"):
            end = T + H + 29 * M
            conn.execute(insert, ("b", "XXY00001002", end, end + H, end - half, end + H + half))
        with pytest.raises(psycopg.errors.CheckViolation, match="reservations_slot"):
            # a slot narrower than the buffer says would slip past the constraint: refused
            end = T + H + 20 * M
            conn.execute(insert, ("c", "XXY00001002", end, end + H, end, end + H))
        # a cancelled reservation holds nothing
        conn.execute("UPDATE reservations SET status = 'cancelled' WHERE reservation_id = 'a'")
        conn.execute(insert, ("d", "XXY00001002", T, T + H, T - half, T + H + half))


def test_the_server_starts_serves_and_cleans_up():
    pg = PgServer().start()
    data_dir, pid = pg.dir, pg.proc.pid if pg.proc else 0
    try:
        assert data_dir is not None and data_dir.is_dir()
        assert pg.timings["initdb_s"] > 0 and pg.timings["start_s"] > 0
        url = pg.create_database("scratch")
        assert url == f"postgresql://kagi@127.0.0.1:{pg.port}/scratch"
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        if os.geteuid() == 0:  # initdb refuses root: the server runs as the postgres user
            assert os.stat(f"/proc/{pid}").st_uid != 0
            assert data_dir.stat().st_uid != 0
    finally:
        pg.stop()
    assert not data_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    pg.stop()  # twice is harmless


def test_missing_binaries_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGI_PG_BIN", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("cloud.pgserver.Path.glob", lambda self, pattern: iter(()))
    with pytest.raises(PgServerError, match=r"initdb, postgres.*apt-get install postgresql"):
        find_bin_dir()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
    except FileNotFoundError:
        return False
    return state.split()[1] != "Z"  # a zombie has exited; only its parent's reaping is left


def test_a_killed_owner_leaves_no_server_behind():
    # a test run killed with SIGKILL cleans nothing up itself: the kernel stops the server
    code = (
        "import time\nfrom cloud.pgserver import PgServer\npg = PgServer().start()\n"
        "print(pg.proc.pid, pg.dir, flush=True)\ntime.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid_text, data_dir = owner.stdout.readline().split()
    try:
        assert _running(int(pid_text))
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 10
        while _running(int(pid_text)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _running(int(pid_text))
    finally:
        owner.kill()
        shutil.rmtree(data_dir, ignore_errors=True)

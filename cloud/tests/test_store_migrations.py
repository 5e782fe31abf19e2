"""Schema migrations on both backends: a fresh database, applying twice, a database newer than
the code, one that is not kagi's, a failing step, and several workers migrating at once."""

from __future__ import annotations

import multiprocessing
import sqlite3

import psycopg
import pytest

from cloud import migrations
from cloud.migrations import Migration
from cloud.store import SchemaError, StoreError, open_store
from cloud.store.sqlite import split_statements


def raw(url: str, sql: str) -> list[tuple]:
    """Run SQL behind the store's back, as an operator with a console would."""
    if url.startswith("postgresql://"):
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []
    lite = sqlite3.connect(url, isolation_level=None)
    try:
        return lite.execute(sql).fetchall()
    finally:
        lite.close()


def tables(url: str) -> set[str]:
    if url.startswith("postgresql://"):
        rows = raw(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    else:
        rows = raw(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows} - {"sqlite_sequence"}


def test_fresh_database_gets_every_step(empty_url: str):
    with open_store(empty_url) as db:
        assert db.schema_version() == migrations.LATEST
    assert raw(empty_url, "SELECT version FROM schema_version ORDER BY version") == [
        (m.version,) for m in migrations.MIGRATIONS
    ]
    assert {"members", "drivers", "cards", "stations", "cars", "reservations"} <= tables(empty_url)
    assert {"reservation_changes", "trips", "refuels", "invoices", "settings"} <= tables(empty_url)


def test_migrating_twice_is_a_no_op(empty_url: str):
    with open_store(empty_url) as db:
        db.add_member("XXY00001", name="Kept")
        assert db.migrate() == migrations.LATEST
    with open_store(empty_url) as db:
        assert db.migrate() == migrations.LATEST
        assert db.get_member("XXY00001").name == "Kept"
    assert len(raw(empty_url, "SELECT * FROM schema_version")) == migrations.LATEST


def test_newer_database_is_refused_untouched(empty_url: str):
    open_store(empty_url).close()
    newer = migrations.LATEST + 1
    raw(empty_url, f"INSERT INTO schema_version VALUES ({newer}, 'from the future', '2030-01-01')")
    before = tables(empty_url)
    for migrate in (True, False):
        with pytest.raises(SchemaError) as err:
            open_store(empty_url, migrate=migrate)
        message = str(err.value)
        assert f"schema version {newer}, newer than this kagi" in message
        assert "upgrade kagi" in message and "nothing was changed" in message
    assert tables(empty_url) == before
    assert raw(empty_url, "SELECT max(version) FROM schema_version") == [(newer,)]


def test_database_behind_the_code_needs_init(empty_url: str):
    if not empty_url.startswith("postgresql://"):
        with pytest.raises(StoreError, match="no database here; create one with `kagi cloud init"):
            open_store(empty_url, migrate=False)
        sqlite3.connect(empty_url).close()  # an empty file
    with pytest.raises(SchemaError, match=r"schema version 0, this kagi needs .*kagi cloud init"):
        open_store(empty_url, migrate=False)
    assert tables(empty_url) == set()


def test_a_database_that_is_not_kagis_is_refused(empty_url: str):
    raw(empty_url, "CREATE TABLE trip_state (id INTEGER PRIMARY KEY, snapshot TEXT)")
    with pytest.raises(SchemaError, match=r"trip_state.*not a kagi cloud database"):
        open_store(empty_url)
    assert tables(empty_url) == {"trip_state"}


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        open_store(str(path))
    assert path.read_text().startswith("these are my notes")


def test_a_failing_step_is_rolled_back_whole(empty_url: str, monkeypatch):
    open_store(empty_url).close()
    bad = Migration(
        migrations.LATEST + 1,
        "half a step",
        "CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1);",
        "CREATE TABLE half_done (x integer); INSERT INTO no_such_table VALUES (1);",
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, bad))
    monkeypatch.setattr(migrations, "LATEST", bad.version)
    with pytest.raises(StoreError, match="no_such_table"):
        open_store(empty_url)
    assert "half_done" not in tables(empty_url)
    monkeypatch.undo()
    with open_store(empty_url, migrate=False) as db:
        assert db.schema_version() == migrations.LATEST


def _open(url: str) -> None:
    open_store(url).close()


def test_workers_starting_at_once_migrate_once(empty_url: str):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_open, args=(empty_url,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(raw(empty_url, "SELECT * FROM schema_version")) == migrations.LATEST


def test_sql_scripts_split_at_statement_ends():
    script = "CREATE TABLE a (x TEXT DEFAULT ';');\nINSERT INTO a VALUES ('x;y');\n\n"
    assert split_statements(script) == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "INSERT INTO a VALUES ('x;y');",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("INSERT INTO a VALUES ('unterminated);")


def test_steps_are_numbered_without_gaps():
    assert [m.version for m in migrations.MIGRATIONS] == list(
        range(1, len(migrations.MIGRATIONS) + 1)
    )
    assert migrations.MIGRATIONS[0].name.startswith("Initial schema")


def test_a_worker_opening_while_another_holds_the_write_lock_waits_for_it(tmp_path) -> None:
    """The interleaving that failed once in four workers, forced: another connection holds the
    new file's write lock (as a worker in the middle of switching it to WAL or migrating it)
    while this one opens. SQLite answers the WAL switch "database is locked" at once (the
    busy handler is skipped where it could deadlock); the store must wait, then migrate."""
    import threading

    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE half_done (x INTEGER)")  # rolled back: never seen
    opened: list[object] = []

    def open_it() -> None:
        try:
            store = open_store(str(path))
            opened.append(store.schema_version())
            store.close()
        except Exception as exc:  # the defect: StoreError "not a usable SQLite database"
            opened.append(exc)

    worker = threading.Thread(target=open_it)
    worker.start()
    worker.join(0.3)
    assert opened == [], "it must wait while the lock is held"
    holder.execute("ROLLBACK")
    holder.close()
    worker.join(10)
    assert opened == [migrations.LATEST]

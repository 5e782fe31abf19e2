"""The SQLite store: durability settings, one transaction per change, corruption reported
(SPEC U-DATA-1, X-SEC-3)."""

from __future__ import annotations

import sqlite3

import pytest

from firmware.effects import CommandResult, Report
from firmware.store import SqliteStore, StoreError
from firmware.tests.harness import ALICE, KEY, bookings
from protocol.cards import card_hash


def test_wal_and_synchronous_full(tmp_path):
    # SPEC U-DATA-1
    store = SqliteStore(tmp_path / "unit.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_state_events_bookings_and_command_commit_together(tmp_path):
    # SPEC U-DATA-1: a state change and its event commit in one transaction
    store = SqliteStore(tmp_path / "unit.db")
    events = store.commit(
        {"version": 1, "state": "unlocked"},
        [Report("trip_started", {"at": 5.0}), CommandResult("c1", True, "started", {"at": 5.0})],
        bookings(),
        "c1",
    )
    assert [(e.seq, e.type) for e in events] == [(1, "trip_started"), (2, "command_result")]
    assert len({e.id for e in events}) == 2
    snapshot, held = store.load()
    assert snapshot == {"version": 1, "state": "unlocked"}
    assert held == bookings()
    assert store.command_seen("c1")


def test_a_failed_commit_leaves_nothing_behind(tmp_path):
    # SPEC U-DATA-1: all or nothing
    store = SqliteStore(tmp_path / "unit.db")
    store.commit({"version": 1, "state": "idle"}, [Report("a", {"at": 1.0})])
    with pytest.raises(TypeError):
        store.commit({"version": 1, "state": "unlocked"}, [Report("b", {"at": object()})])
    snapshot, _ = store.load()
    assert snapshot == {"version": 1, "state": "idle"}
    assert [e.type for e in store.pending()] == ["a"]
    assert store.last_seq() == 1


def test_sequence_numbers_never_repeat_after_acknowledgement(tmp_path):
    # the per-car sequence keeps counting when the outbox drains
    path = tmp_path / "unit.db"
    store = SqliteStore(path)
    (first,) = store.commit({"version": 1}, [Report("a", {"at": 1.0})])
    store.acknowledge(first.id)
    assert store.pending() == []
    store.close()
    store = SqliteStore(path)
    (second,) = store.commit({"version": 1}, [Report("b", {"at": 2.0})])
    assert second.seq == 2


def test_a_corrupt_database_is_reported_and_left_untouched(tmp_path):
    # SPEC U-DATA-1: never silently reset
    path = tmp_path / "unit.db"
    store = SqliteStore(path)
    store.commit({"version": 1, "state": "in_use"}, [Report("a", {"at": 1.0})])
    store.close()
    data = bytearray(path.read_bytes())
    data[200:4000] = b"\xa5" * 3800  # scribble over the schema page
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        SqliteStore(path)
    assert str(path) in str(err.value)
    assert "left as it is" in str(err.value)
    assert path.read_bytes() == bytes(data)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "unit.db"
    path.write_text("hello, I am a text file" * 100)
    with pytest.raises(StoreError, match="unreadable"):
        SqliteStore(path)
    assert path.read_text().startswith("hello")


def test_another_programs_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE things (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a kagi unit database"):
        SqliteStore(path)


def test_cards_are_stored_only_as_hashes(tmp_path):
    # SPEC U-CARD-2 / architecture: card IDs are stored as keyed hashes of the IDm
    path = tmp_path / "unit.db"
    store = SqliteStore(path)
    store.commit({"version": 1}, [], bookings())
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("unit.db*"))
    assert card_hash(KEY, ALICE).encode() in raw
    assert ALICE not in raw and ALICE.hex().encode() not in raw

"""The car's durable memory: SQLite in WAL mode with synchronous=FULL (U-DATA-1).

It holds the bookings as the car knows them (reservations, drivers, licence expiry, card hashes —
never an IDm), the trip state with its deadlines, the outbox of events for the cloud (unique id,
per-car sequence number) and the ids of commands already applied. A state change, its events, the
bookings it came with and the command it answered commit in one transaction.

A corrupt or unreadable database is reported and left exactly as it is: never reset.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.bookings import Bookings
from firmware.effects import CommandResult, Report

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trip_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot TEXT NOT NULL
);
CREATE TABLE drivers (id TEXT PRIMARY KEY, licence_expiry TEXT NOT NULL);
CREATE TABLE cards (
    card_hash TEXT NOT NULL,
    driver_id TEXT NOT NULL REFERENCES drivers(id),
    strong INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (card_hash, driver_id)
);
CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    driver_id TEXT NOT NULL REFERENCES drivers(id),
    start REAL NOT NULL,
    "end" REAL NOT NULL CHECK ("end" > start)
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE commands (id TEXT PRIMARY KEY, result_seq INTEGER NOT NULL);
"""


class StoreError(RuntimeError):
    """The database cannot be used; the message says which file and why. Nothing was changed."""


@dataclass(frozen=True)
class OutboxEvent:
    id: str
    seq: int
    type: str
    at: float
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq, "type": self.type, "at": self.at, "data": self.data}


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            if existed:
                self._verify()
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            # new by its content, not its size: a power cut during the very first start can leave
            # a file with a header and no tables, which must not brick the unit
            if self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                self._create()
            self._check_schema()
            self._add_strong_cards()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: the database is unreadable ({exc}); it was left as it is — "
                "restore it from a backup or move it aside to start empty"
            ) from None

    def _verify(self) -> None:
        result = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        if result != ["ok"]:
            raise StoreError(
                f"{self.path}: the database is corrupt ({'; '.join(result[:3])}); it was left as "
                "it is — restore it from a backup or move it aside to start empty"
            )

    def _create(self) -> None:
        with self._tx() as db:
            db.executescript(
                "BEGIN IMMEDIATE;"
                + SCHEMA
                + f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                + "INSERT INTO meta VALUES ('next_seq', '1');"
                + "INSERT INTO meta VALUES ('bookings_version', '0');"
                + "COMMIT;"
            )

    def _check_schema(self) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None:
            raise StoreError(f"{self.path}: not a kagi unit database (no schema version)")
        if int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {row[0]}, this unit reads {SCHEMA_VERSION}"
            )

    def _add_strong_cards(self) -> None:
        """A database from before strong cards gets their column (every card plain)."""
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(cards)")]
        if "strong" not in columns:
            self._db.execute("ALTER TABLE cards ADD COLUMN strong INTEGER NOT NULL DEFAULT 0")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """The connection, for one thread at a time (the runner writes, a cloud link reads)."""
        with self._lock:
            yield self._db

    # ---- reading ----------------------------------------------------------------------------

    def load(self) -> tuple[dict[str, Any] | None, Bookings]:
        """The saved trip state (None on a new unit) and the bookings."""
        with self._tx() as db:
            row = db.execute("SELECT snapshot FROM trip_state WHERE id = 1").fetchone()
            bookings = self._bookings(db)
        if row is None:
            return None, bookings
        try:
            snapshot: dict[str, Any] = json.loads(row[0])
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.path}: the saved trip state is unreadable ({exc})") from None
        return snapshot, bookings

    def _bookings(self, db: sqlite3.Connection) -> Bookings:
        version = int(self._meta(db, "bookings_version"))
        cards: dict[str, list[str]] = {}
        strong: dict[str, list[str]] = {}
        for card, driver, is_strong in db.execute("SELECT card_hash, driver_id, strong FROM cards"):
            cards.setdefault(driver, []).append(card)
            if is_strong:
                strong.setdefault(driver, []).append(card)
        drivers = [
            {
                "id": d,
                "licence_expiry": exp,
                "cards": cards.get(d, []),
                "strong_cards": strong.get(d, []),
            }
            for d, exp in db.execute("SELECT id, licence_expiry FROM drivers")
        ]
        reservations = [
            {"id": r, "driver_id": d, "start": s, "end": e}
            for r, d, s, e in db.execute('SELECT id, driver_id, start, "end" FROM reservations')
        ]
        return Bookings.from_dict(
            {"version": version, "reservations": reservations, "drivers": drivers}
        )

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> str:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"meta key {key!r} is missing")
        return str(row[0])

    def command_seen(self, command_id: str) -> bool:
        with self._tx() as db:
            return (
                db.execute("SELECT 1 FROM commands WHERE id = ?", (command_id,)).fetchone()
                is not None
            )

    def pending(self, limit: int = 100) -> list[OutboxEvent]:
        """Unacknowledged events, oldest first."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, seq, type, at, data FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [OutboxEvent(i, s, t, a, json.loads(d)) for i, s, t, a, d in rows]

    def pending_count(self) -> int:
        with self._tx() as db:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def last_seq(self) -> int:
        with self._tx() as db:
            return int(self._meta(db, "next_seq")) - 1

    # ---- writing ----------------------------------------------------------------------------

    def commit(
        self,
        snapshot: dict[str, Any],
        reports: Sequence[Report | CommandResult],
        bookings: Bookings | None = None,
        command_id: str | None = None,
    ) -> list[OutboxEvent]:
        """One transaction: the state, its events, new bookings, and the command answered."""
        events: list[OutboxEvent] = []
        with self._tx() as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                seq = int(self._meta(db, "next_seq"))
                for report in reports:
                    event = to_outbox_event(report, seq)
                    db.execute(
                        "INSERT INTO outbox (seq, id, type, at, data) VALUES (?, ?, ?, ?, ?)",
                        (event.seq, event.id, event.type, event.at, json.dumps(event.data)),
                    )
                    events.append(event)
                    seq += 1
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq),))
                db.execute(
                    "INSERT OR REPLACE INTO trip_state (id, snapshot) VALUES (1, ?)",
                    (json.dumps(snapshot, sort_keys=True),),
                )
                if bookings is not None:
                    self._write_bookings(db, bookings)
                if command_id is not None:
                    result_seq = next(
                        (e.seq for e in events if e.type == "command_result"), seq - 1
                    )
                    db.execute("INSERT INTO commands VALUES (?, ?)", (command_id, result_seq))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return events

    @staticmethod
    def _write_bookings(db: sqlite3.Connection, bookings: Bookings) -> None:
        db.execute("DELETE FROM reservations")
        db.execute("DELETE FROM cards")
        db.execute("DELETE FROM drivers")
        for d in bookings.drivers.values():
            db.execute("INSERT INTO drivers VALUES (?, ?)", (d.id, d.licence_expiry))
            db.executemany(
                "INSERT INTO cards (card_hash, driver_id, strong) VALUES (?, ?, ?)",
                [(c, d.id, int(c in d.strong_cards)) for c in d.cards],
            )
        db.executemany(
            'INSERT INTO reservations (id, driver_id, start, "end") VALUES (?, ?, ?, ?)',
            [(r.id, r.driver_id, r.start, r.end) for r in bookings.reservations],
        )
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'bookings_version'", (str(bookings.version),)
        )

    def acknowledge(self, event_id: str) -> None:
        """The broker has the event (PUBACK): it may leave the outbox."""
        with self._tx() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))

    def close(self) -> None:
        with self._tx() as db:
            db.close()


def to_outbox_event(report: Report | CommandResult, seq: int) -> OutboxEvent:
    if isinstance(report, CommandResult):
        data: dict[str, Any] = {
            "command_id": report.command_id,
            "ok": report.ok,
            "code": report.code,
            **report.data,
        }
        kind, at = "command_result", float(report.data.get("at", 0.0))
    else:
        data, kind, at = dict(report.data), report.type, float(report.data.get("at", 0.0))
    return OutboxEvent(str(uuid.uuid4()), seq, kind, at, data)

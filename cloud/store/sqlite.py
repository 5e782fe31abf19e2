"""The store on a SQLite file (the default): WAL, synchronous=FULL, foreign keys on.

Every write runs inside `BEGIN IMMEDIATE`, which takes the database's single write lock before
the first read: the conflict checks and the insert that follows them see no other writer, so
C-CAR-1 and C-DRV-1 hold with any number of processes on one file. Times are stored as fixed-width
ISO-8601 UTC text, which sorts as the times do.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloud import migrations
from cloud.store.base import Store
from cloud.store.core import Clock, Cursor, check_not_newer
from cloud.store.errors import DUPLICATE, Conflict, SchemaError, StoreError

BUSY_TIMEOUT_S = 30.0


class SqliteStore(Store):
    backend = "sqlite"

    def __init__(self, path: str | Path, clock: Clock | None = None, create: bool = True) -> None:
        self.path = Path(path)
        super().__init__(str(self.path), clock)
        if not create and not self.path.exists():
            raise StoreError(
                f"{self.path}: no database here; create one with `kagi cloud init --db {self.path}`"
            )
        try:
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the database ({exc})") from None
        try:
            mode = self._wal()
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a usable SQLite database ({exc})") from None

    def _wal(self) -> str:
        """Switch to WAL, waiting as long as any other lock. The switch promotes a read lock;
        while another connection holds the write lock (a worker migrating a new file), SQLite
        answers "locked" at once instead of calling the busy handler (it could deadlock), so
        the wait is ours."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        pause = 0.005
        while True:
            try:
                return str(self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    # ---- backend interface ------------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self._db.execute(sql, tuple(params))

    def _execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            self._db.executemany(sql, [tuple(r) for r in rows])

    def _begin(self, write: bool, durable: bool = True) -> None:
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _translate(self, exc: Exception) -> StoreError | None:
        if isinstance(exc, sqlite3.IntegrityError):
            if "UNIQUE" in str(exc):
                return Conflict(DUPLICATE, f"already exists ({exc})")
            return StoreError(f"refused by the database: {exc}")
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StoreError(
                f"{self.path}: the database stayed busy for {BUSY_TIMEOUT_S:g} s; try again"
            )
        if isinstance(exc, sqlite3.Error):
            return StoreError(f"{self.path}: {exc}")
        return None

    def _time(self, value: dt.datetime) -> object:
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")

    def _read_time(self, value: Any) -> dt.datetime:
        return dt.datetime.fromisoformat(value)

    def _date(self, value: dt.date) -> object:
        return value.isoformat()

    def _read_date(self, value: Any) -> dt.date:
        return dt.date.fromisoformat(value)

    def _json(self, value: object) -> object:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    def _read_json(self, value: Any) -> Any:
        return json.loads(value)

    def _close(self) -> None:
        self._db.close()

    # ---- schema -----------------------------------------------------------------------------

    def _tables(self) -> list[str]:
        rows = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _version_in_tx(self) -> int:
        tables = self._tables()
        if "schema_version" not in tables:
            if tables:
                raise SchemaError(
                    f"{self.path}: holds tables ({', '.join(tables[:4])}) but no schema_version: "
                    "not a kagi cloud database; nothing was changed"
                )
            return 0
        row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def schema_version(self) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    return self._version_in_tx()
                finally:
                    self._db.execute("ROLLBACK")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: not a usable SQLite database ({exc})") from None

    def migrate(self) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) or exc from None
            try:
                current = self._version_in_tx()
                check_not_newer(self.path, current)
                if current == 0:
                    self._db.execute(
                        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                        "name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT"
                    )
                for step in migrations.MIGRATIONS[current:]:
                    for statement in split_statements(step.sqlite):
                        self._db.execute(statement)
                    self._db.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)",
                        (step.version, step.name, self._time(self._now())),
                    )
                self._db.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._translate(exc) or exc from None
                raise
            return max(current, migrations.LATEST)


def split_statements(script: str) -> list[str]:
    """The statements of a SQL script, each complete by SQLite's own test (so a `;` inside a
    string or a trigger body does not split it). Run one by one inside our transaction, since
    `executescript` would commit first."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n\t;"):
        raise ValueError(f"incomplete SQL statement at the end: {pending.strip()[:60]!r}")
    return statements

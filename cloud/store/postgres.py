"""The store on PostgreSQL (production): psycopg 3, READ COMMITTED, times as timestamptz.

A reservation write first locks its car's row, then its driver's (and its member's when it
counts open reservations), so two workers booking the same car or driver take turns and the
second one's check sees the first one's booking. The exclusion constraints of the schema
(`reservations_car_buffer`, `reservations_driver_overlap`) hold the rules even for a writer that
skips all that; their violation becomes the same typed Conflict.

(Without the locks, two workers inserting conflicting rows at once each wait for the other
inside the exclusion check: PostgreSQL breaks that deadlock only after `deadlock_timeout`, 1 s.)
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any, Self, cast

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from cloud import migrations
from cloud.store.base import Store
from cloud.store.core import Clock, Cursor, check_not_newer
from cloud.store.errors import (
    CAR_BUFFER,
    DRIVER_OVERLAP,
    DUPLICATE,
    Conflict,
    SchemaError,
    StoreError,
)

# One lock id for "a migration is running" (any fixed bigint; the digits spell KAGI on a keypad).
MIGRATION_LOCK = 5244


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """`?` placeholders (the shared SQL) as psycopg's `%s`."""
    return sql.replace("%", "%%").replace("?", "%s")


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    return f"postgresql://{info.get('user', '')}@{host}:{port}/{info.get('dbname', '')}"


class PostgresStore(Store):
    backend = "postgresql"
    # NO KEY UPDATE: exclusive among writers, yet no obstacle to the foreign-key checks
    # (KEY SHARE) of rows that reference the locked one
    _FOR_UPDATE = " FOR NO KEY UPDATE"

    def __init__(self, url: str, clock: Clock | None = None) -> None:
        super().__init__(url, clock)
        self.where = describe(url)
        try:
            self._db = psycopg.connect(url, options="-c TimeZone=UTC", connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot connect ({str(exc).strip()})") from None

    def another(self) -> Self:
        return type(self)(self.url, self._clock)

    # ---- backend interface ------------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self._db.execute(_placeholders(sql), tuple(params))

    def _execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:  # psycopg sends them in one pipeline
            with self._db.cursor() as cursor:
                cursor.executemany(_placeholders(sql), [tuple(r) for r in rows])

    def _begin(self, write: bool, durable: bool = True) -> None:
        # psycopg opens the transaction with the first statement
        if self._db.closed:
            raise StoreError(f"{self.where}: the connection is closed")
        if not durable:
            self._db.execute("SET LOCAL synchronous_commit TO OFF")

    def _commit(self) -> None:
        self._db.commit()

    def _rollback(self) -> None:
        self._db.rollback()

    def _translate(self, exc: Exception) -> StoreError | None:
        if isinstance(exc, pgerrors.ExclusionViolation):
            constraint = exc.diag.constraint_name or ""
            if constraint == "reservations_car_buffer":
                return Conflict(
                    CAR_BUFFER,
                    "the car has another reservation within the buffer of this time (booked at "
                    "the same moment by another request)",
                )
            if constraint == "reservations_driver_overlap":
                return Conflict(
                    DRIVER_OVERLAP,
                    "the driver already has a reservation overlapping this time (booked at the "
                    "same moment by another request)",
                )
        if isinstance(exc, pgerrors.UniqueViolation):
            return Conflict(
                DUPLICATE, f"already exists ({(exc.diag.message_detail or '').strip()})"
            )
        if isinstance(exc, pgerrors.IntegrityError):
            return StoreError(f"refused by the database: {exc.diag.message_primary}")
        if isinstance(exc, psycopg.OperationalError):
            return StoreError(f"{self.where}: {str(exc).strip()}")
        if isinstance(exc, psycopg.Error):
            return StoreError(f"{self.where}: {str(exc).strip()}")
        return None

    def _time(self, value: dt.datetime) -> object:
        return value

    def _read_time(self, value: Any) -> dt.datetime:
        return cast(dt.datetime, value).astimezone(dt.UTC)

    def _date(self, value: dt.date) -> object:
        return value

    def _read_date(self, value: Any) -> dt.date:
        return cast(dt.date, value)

    def _json(self, value: object) -> object:
        return Jsonb(value)

    def _read_json(self, value: Any) -> Any:
        return value

    def _close(self) -> None:
        self._db.close()

    # ---- schema -----------------------------------------------------------------------------

    def _version_in_tx(self) -> int:
        row = self._db.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if not (row and row[0]):
            tables = [
                str(r[0])
                for r in self._db.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "ORDER BY tablename"
                )
            ]
            if tables:
                raise SchemaError(
                    f"{self.where}: holds tables ({', '.join(tables[:4])}) but no "
                    "schema_version: not a kagi cloud database; nothing was changed"
                )
            return 0
        version = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(version[0] or 0) if version else 0

    def schema_version(self) -> int:
        with self._lock:
            try:
                return self._version_in_tx()
            except psycopg.Error as exc:
                raise self._translate(exc) or exc from None
            finally:
                self._db.rollback()

    def migrate(self) -> int:
        with self._lock:
            try:
                # two workers starting at once: the second waits here, then finds nothing to do
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                current = self._version_in_tx()
                check_not_newer(self.where, current)
                if current == 0:
                    self._db.execute(
                        "CREATE TABLE schema_version (version integer PRIMARY KEY, "
                        "name text NOT NULL, applied_at timestamptz NOT NULL)"
                    )
                for step in migrations.MIGRATIONS[current:]:
                    self._db.execute(step.postgresql)
                    self._db.execute(
                        "INSERT INTO schema_version VALUES (%s, %s, %s)",
                        (step.version, step.name, self._now()),
                    )
                self._db.commit()
            except BaseException as exc:
                self._db.rollback()
                if isinstance(exc, psycopg.Error):
                    raise self._translate(exc) or exc from None
                raise
            return max(current, migrations.LATEST)

"""The core every store shares: the backend interface (SQLite, PostgreSQL), transactions, and
the mapping of rows to records. The public API is in `fleet` and `bookings`, joined in `base`.

Each public method of the store is one transaction: it validates its arguments, reads what it
needs, writes, and commits — or raises a typed error from `cloud.store.errors` and leaves the
database as it was. SQL is written once, with `?` placeholders; a backend adapts it.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol, Self

from cloud import migrations
from cloud.clock import Clock as Clock
from cloud.clock import system_clock as system_clock
from cloud.store import validate as v
from cloud.store.errors import (
    NotFound,
    SchemaError,
    StoreError,
)
from cloud.store.records import (
    Car,
    Card,
    Driver,
    Invoice,
    Member,
    Refuel,
    Reservation,
    ReservationChange,
    Station,
    Trip,
)

LIVE = "('reserved', 'in_use')"
MEMBER_COLS = "member_id, name, email, status, created_at"
DRIVER_COLS = "driver_id, member_id, name, email, is_admin, licence_expiry, created_at"
CARD_COLS = "card_hash, driver_id, strong, registered_at, revoked_at"
STATION_COLS = "station_id, name, lat, lon, radius_m"
CAR_COLS = "car_id, station_id, name, kind, created_at"
RES_COLS = (
    "reservation_id, car_id, driver_id, member_id, starts_at, ends_at, buffer_minutes, status, "
    "change_count, extension_count, cancellation_fee, version, created_at, updated_at"
)
# a reservation with its trip's start and return
RES_SELECT = (
    "SELECT "
    + ", ".join(f"r.{c.strip()}" for c in RES_COLS.split(","))
    + ", t.started_at, t.ended_at FROM reservations r "
    "LEFT JOIN trips t ON t.reservation_id = r.reservation_id"
)
CHANGE_COLS = "change_id, reservation_id, at, kind, old_start, old_end, new_start, new_end"
TRIP_COLS = (
    "reservation_id, started_at, started_by, ended_at, odometer_start_km, odometer_end_km, "
    "fuel_start_pct, fuel_end_pct, lat_start, lon_start, lat_end, lon_end, overtime_minutes, "
    "unauthorised_extension"
)
REFUEL_COLS = "refuel_id, reservation_id, at, litres, fuel_card, amount_yen, kind, recorded_by"
INVOICE_COLS = "invoice_id, member_id, reservation_id, issued_at, lines, total"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def equal_to(prefix: str = "", **columns: object) -> tuple[list[str], list[object]]:
    """WHERE terms `{prefix}{column} = ?` and their values, for each column given a value (None
    means "not filtered")."""
    given = {c: v for c, v in columns.items() if v is not None}
    return [f"{prefix}{c} = ?" for c in given], list(given.values())


def slot(
    start: dt.datetime, end: dt.datetime, buffer_minutes: int
) -> tuple[dt.datetime, dt.datetime]:
    """The car slot of a reservation: its times widened by half the buffer on each side.

    Two half-open slots [s1 - b/2, e1 + b/2) and [s2 - b/2, e2 + b/2) overlap exactly when
    s1 < e2 + b and s2 < e1 + b, i.e. when less than b lies between the two reservations: the
    breach of C-CAR-1. A gap of exactly b makes the slots touch, which is allowed.
    """
    half = dt.timedelta(seconds=buffer_minutes * 30)
    return start - half, end + half


def check_not_newer(where: object, current: int) -> None:
    if current > migrations.LATEST:
        raise SchemaError(
            f"{where}: the database is at schema version {current}, newer than this kagi "
            f"knows (up to {migrations.LATEST}); upgrade kagi to use it — nothing was changed"
        )


class StoreCore(abc.ABC):
    """The backend interface and the shared plumbing of `Store`."""

    backend: ClassVar[str]
    # Appended to a read to lock the row until the transaction ends (PostgreSQL; SQLite's
    # BEGIN IMMEDIATE already excludes every other writer). Reservation writes lock their car,
    # then their driver, then their member, then the reservation: always in this order, so two
    # writers never wait for each other in a circle.
    _FOR_UPDATE: ClassVar[str] = ""

    def __init__(self, url: str, clock: Clock | None) -> None:
        self.url = url
        self._clock = clock or system_clock
        self._lock = threading.RLock()
        self._depth = 0

    # ---- backend interface ------------------------------------------------------------------

    @abc.abstractmethod
    def _execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        """Run one statement written with `?` placeholders."""

    @abc.abstractmethod
    def _execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement once for each row of parameters (one round trip where the
        database allows)."""

    @abc.abstractmethod
    def _begin(self, write: bool, durable: bool = True) -> None:
        """Open a transaction; one not `durable` may be lost in a crash (never half of it), so
        its commit need not wait for the disk."""

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def _rollback(self) -> None: ...

    @abc.abstractmethod
    def _translate(self, exc: Exception) -> StoreError | None:
        """The typed error for a database driver's exception (None: not the database's)."""

    @abc.abstractmethod
    def _time(self, value: dt.datetime) -> object: ...

    @abc.abstractmethod
    def _read_time(self, value: Any) -> dt.datetime: ...

    @abc.abstractmethod
    def _date(self, value: dt.date) -> object: ...

    @abc.abstractmethod
    def _read_date(self, value: Any) -> dt.date: ...

    @abc.abstractmethod
    def _json(self, value: object) -> object: ...

    @abc.abstractmethod
    def _read_json(self, value: Any) -> Any: ...

    @abc.abstractmethod
    def migrate(self) -> int:
        """Apply the pending migrations; returns the schema version. Refuses a newer database."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The database's schema version (0: empty)."""

    @abc.abstractmethod
    def _close(self) -> None: ...

    # ---- transactions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, write: bool = True, *, durable: bool = True) -> Iterator[None]:
        with self._lock:
            if self._depth:  # inside batch(): the outer transaction commits or rolls back
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                self._begin(write, durable)
            except Exception as exc:
                raise self._translate(exc) or exc from None
            self._depth = 1
            try:
                yield
                self._commit()
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    self._rollback()
                mapped = (
                    self._translate(exc)
                    if isinstance(exc, Exception) and not isinstance(exc, StoreError)
                    else None
                )
                if mapped is not None:
                    raise mapped from None
                raise
            finally:
                self._depth = 0

    @contextlib.contextmanager
    def batch(self) -> Iterator[Self]:
        """Several writes as one transaction: all of them, or (on any error) none."""
        with self._tx(write=True):
            yield self

    def another(self) -> Self | None:
        """A second connection to the same database, for a thread that would otherwise wait on
        this one's lock; None where the database takes one writer at a time anyway (SQLite)."""
        return None

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- rows and values --------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return v.instant(self._clock(), "clock")

    def _one(self, sql: str, params: Sequence[object] = ()) -> Any:
        return self._execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return self._execute(sql, params).fetchall()

    def _opt_time(self, value: Any) -> dt.datetime | None:
        return None if value is None else self._read_time(value)

    def _member(self, row: Any) -> Member:
        return Member(row[0], row[1], row[2], row[3], self._read_time(row[4]))

    def _driver(self, row: Any) -> Driver:
        expiry = None if row[5] is None else self._read_date(row[5])
        return Driver(row[0], row[1], row[2], row[3], bool(row[4]), expiry, self._read_time(row[6]))

    def _card(self, row: Any) -> Card:
        return Card(row[0], row[1], bool(row[2]), self._read_time(row[3]), self._opt_time(row[4]))

    def _station(self, row: Any) -> Station:
        return Station(row[0], row[1], float(row[2]), float(row[3]), float(row[4]))

    def _car(self, row: Any) -> Car:
        return Car(row[0], row[1], row[2], row[3], self._read_time(row[4]))

    def _reservation(self, row: Any) -> Reservation:
        return Reservation(
            row[0], row[1], row[2], row[3], self._read_time(row[4]), self._read_time(row[5]),
            int(row[6]), row[7], int(row[8]), int(row[9]), row[10], int(row[11]),
            self._read_time(row[12]), self._read_time(row[13]), self._opt_time(row[14]),
            self._opt_time(row[15]),
        )  # fmt: skip

    def _change(self, row: Any) -> ReservationChange:
        return ReservationChange(
            int(row[0]), row[1], self._read_time(row[2]), row[3],
            *(self._opt_time(x) for x in row[4:8]),
        )  # fmt: skip

    def _trip(self, row: Any) -> Trip:
        return Trip(
            row[0], self._read_time(row[1]), row[2], self._opt_time(row[3]), row[4], row[5],
            row[6], row[7], row[8], row[9], row[10], row[11], int(row[12]), bool(row[13]),
        )  # fmt: skip

    def _refuel(self, row: Any) -> Refuel:
        return Refuel(
            int(row[0]), row[1], self._read_time(row[2]), float(row[3]), bool(row[4]),
            None if row[5] is None else int(row[5]), row[6], row[7],
        )  # fmt: skip

    def _invoice(self, row: Any) -> Invoice:
        lines = tuple(dict(line) for line in self._read_json(row[4]))
        return Invoice(row[0], row[1], row[2], self._read_time(row[3]), lines, int(row[5]))

    # ---- rows by key (inside a transaction) -------------------------------------------------

    def _get_member(self, member_id: str, for_update: bool = False) -> Member:
        lock = self._FOR_UPDATE if for_update else ""
        row = self._one(
            f"SELECT {MEMBER_COLS} FROM members WHERE member_id = ?{lock}", (member_id,)
        )
        if row is None:
            raise NotFound("member", member_id)
        return self._member(row)

    def _get_driver(self, driver_id: str, for_update: bool = False) -> Driver:
        lock = self._FOR_UPDATE if for_update else ""
        row = self._one(
            f"SELECT {DRIVER_COLS} FROM drivers WHERE driver_id = ?{lock}", (driver_id,)
        )
        if row is None:
            raise NotFound("driver", driver_id)
        return self._driver(row)

    def _get_card(self, card_hash: str) -> Card:
        row = self._one(f"SELECT {CARD_COLS} FROM cards WHERE card_hash = ?", (card_hash,))
        if row is None:
            raise NotFound("card", card_hash)
        return self._card(row)

    def _get_car(self, car_id: str, for_update: bool = False) -> Car:
        lock = self._FOR_UPDATE if for_update else ""
        row = self._one(f"SELECT {CAR_COLS} FROM cars WHERE car_id = ?{lock}", (car_id,))
        if row is None:
            raise NotFound("car", car_id)
        return self._car(row)

    def _get_reservation(self, reservation_id: str, for_update: bool = False) -> Reservation:
        lock = f"{self._FOR_UPDATE} OF r" if for_update and self._FOR_UPDATE else ""
        row = self._one(f"{RES_SELECT} WHERE r.reservation_id = ?{lock}", (reservation_id,))
        if row is None:
            raise NotFound("reservation", reservation_id)
        return self._reservation(row)

    def _get_trip(self, reservation_id: str) -> Trip:
        row = self._one(
            f"SELECT {TRIP_COLS} FROM trips WHERE reservation_id = ?", (reservation_id,)
        )
        if row is None:
            raise NotFound("trip", reservation_id)
        return self._trip(row)

"""The cloud's store: members, drivers, cards, stations, cars, reservations with their history,
trips and invoices, on SQLite (default) or PostgreSQL (production).

    store = open_store("kagi-cloud.db")                # or "postgresql://user@host/db"
    r = store.create_reservation(car_id=..., driver_id=..., start=..., end=..., buffer_minutes=30)

See `Store` for the whole API and docs/cloud-store.md for the schema and its guarantees.
"""

from __future__ import annotations

from pathlib import Path

from cloud import migrations
from cloud.store.base import Store
from cloud.store.core import Clock, check_not_newer, slot
from cloud.store.errors import (
    CAR_BUFFER,
    DRIVER_OVERLAP,
    DUPLICATE,
    MEMBER_LIMIT,
    REVOKED,
    STALE,
    STATUS,
    Conflict,
    InvalidValue,
    NotFound,
    SchemaError,
    StoreError,
)
from cloud.store.records import (
    LIVE_STATUSES,
    Car,
    Card,
    Driver,
    Invoice,
    Member,
    Reservation,
    ReservationChange,
    Station,
    Trip,
)

__all__ = [
    "CAR_BUFFER",
    "DRIVER_OVERLAP",
    "DUPLICATE",
    "LIVE_STATUSES",
    "MEMBER_LIMIT",
    "REVOKED",
    "STALE",
    "STATUS",
    "Car",
    "Card",
    "Clock",
    "Conflict",
    "Driver",
    "InvalidValue",
    "Invoice",
    "Member",
    "NotFound",
    "Reservation",
    "ReservationChange",
    "SchemaError",
    "Station",
    "Store",
    "StoreError",
    "Trip",
    "open_store",
    "slot",
]

DEFAULT_DB = "kagi-cloud.db"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> Path:
    """A SQLite file from a plain path or a `sqlite:///relative` / `sqlite:////absolute` URL."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if "://" in url or not url.strip():
        raise InvalidValue(
            "db",
            f"expected a SQLite file path, sqlite:///PATH or postgresql://…, got {url!r}",
        )
    return Path(url)


def open_store(url: str = DEFAULT_DB, *, clock: Clock | None = None, migrate: bool = True) -> Store:
    """Open the database at `url` (a SQLite path or a postgresql:// URL).

    With `migrate` (the default) a missing SQLite file is created and pending migrations are
    applied; without, the database must exist and be at this code's schema version. Either way a
    database newer than this code is refused with SchemaError, untouched.
    """
    store: Store
    if is_postgres(url):
        from cloud.store.postgres import PostgresStore  # psycopg only when it is used

        store = PostgresStore(url, clock)
    else:
        from cloud.store.sqlite import SqliteStore

        store = SqliteStore(sqlite_path(url), clock, create=migrate)
    try:
        if migrate:
            store.migrate()
        else:
            version = store.schema_version()
            if version != migrations.LATEST:
                check_not_newer(url, version)
                raise SchemaError(
                    f"{url}: the database is at schema version {version}, this kagi needs "
                    f"{migrations.LATEST}; run `kagi cloud init --db {url}` to bring it up to date"
                )
    except BaseException:
        store.close()
        raise
    return store

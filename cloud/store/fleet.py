"""The store's fleet: settings, members and drivers (with their password hashes), cards,
stations and cars. Add, read, list; the few changes an operator makes."""

from __future__ import annotations

import datetime as dt

from cloud.store import validate as v
from cloud.store.core import (
    CAR_COLS,
    CARD_COLS,
    DRIVER_COLS,
    MEMBER_COLS,
    STATION_COLS,
    StoreCore,
)
from cloud.store.errors import (
    DUPLICATE,
    REVOKED,
    Conflict,
    InvalidValue,
    NotFound,
)
from cloud.store.records import (
    MEMBER_STATUSES,
    Car,
    Card,
    Driver,
    Member,
    Station,
)

FLEET_KEY = "fleet_key"  # the setting holding the fleet key (hex) that card hashes are keyed by


class FleetStore(StoreCore):
    """Members, drivers, cards, stations, cars and settings."""

    # ---- settings ---------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        with self._tx(write=False):
            row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        v.text(key, "key")
        with self._tx():
            if self._one("SELECT 1 FROM settings WHERE key = ?", (key,)):
                self._execute("UPDATE settings SET value = ? WHERE key = ?", (value, key))
            else:
                self._execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, value))

    # ---- members and drivers ----------------------------------------------------------------

    def add_member(self, member_id: str, *, name: str, email: str | None = None) -> Member:
        member_id = v.member_id(member_id)
        name = v.text(name, "name")
        email = None if email is None else v.email(email)
        now = self._now()
        with self._tx():
            if self._one("SELECT 1 FROM members WHERE member_id = ?", (member_id,)):
                raise Conflict(DUPLICATE, f"member {member_id} already exists")
            self._execute(
                "INSERT INTO members (member_id, name, email, status, created_at) "
                "VALUES (?, ?, ?, 'active', ?)",
                (member_id, name, email, self._time(now)),
            )
        return Member(member_id, name, email, "active", now)

    def get_member(self, member_id: str) -> Member:
        with self._tx(write=False):
            return self._get_member(member_id)

    def list_members(self) -> list[Member]:
        with self._tx(write=False):
            rows = self._all(f"SELECT {MEMBER_COLS} FROM members ORDER BY member_id")
        return [self._member(r) for r in rows]

    def set_member_status(self, member_id: str, status: str) -> Member:
        """active, suspended or revoked (C-PEN-1); the rules decide when."""
        if status not in MEMBER_STATUSES:
            raise InvalidValue("status", f"expected one of {MEMBER_STATUSES}, got {status!r}")
        with self._tx():
            self._get_member(member_id, for_update=True)
            self._execute("UPDATE members SET status = ? WHERE member_id = ?", (status, member_id))
            return self._get_member(member_id)

    def add_driver(
        self,
        driver_id: str,
        *,
        name: str,
        email: str,
        licence_expiry: dt.date | None,
        is_admin: bool = False,
    ) -> Driver:
        """A driver of the member whose ID their ID begins with (XXY00001001 → XXY00001).
        `licence_expiry` is the last day the licence is valid (None: no licence on file)."""
        driver_id = v.driver_id(driver_id)
        name = v.text(name, "name")
        email = v.email(email)
        if licence_expiry is not None:
            licence_expiry = v.day(licence_expiry, "licence_expiry")
        if not isinstance(is_admin, bool):
            raise InvalidValue("is_admin", f"expected true or false, got {is_admin!r}")
        member_id = driver_id[:8]
        now = self._now()
        with self._tx():
            if self._one("SELECT 1 FROM members WHERE member_id = ?", (member_id,)) is None:
                raise NotFound("member", member_id, f"the first 8 characters of {driver_id}")
            if self._one("SELECT 1 FROM drivers WHERE driver_id = ?", (driver_id,)):
                raise Conflict(DUPLICATE, f"driver {driver_id} already exists")
            self._execute(
                "INSERT INTO drivers (driver_id, member_id, name, email, is_admin, "
                "licence_expiry, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (driver_id, member_id, name, email, is_admin,
                 None if licence_expiry is None else self._date(licence_expiry), self._time(now)),
            )  # fmt: skip
        return Driver(driver_id, member_id, name, email, is_admin, licence_expiry, now)

    def get_driver(self, driver_id: str) -> Driver:
        with self._tx(write=False):
            return self._get_driver(driver_id)

    def list_drivers(self, member_id: str | None = None) -> list[Driver]:
        where, params = ("WHERE member_id = ?", (member_id,)) if member_id else ("", ())
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {DRIVER_COLS} FROM drivers {where} ORDER BY driver_id", params
            )
        return [self._driver(r) for r in rows]

    def update_driver(
        self,
        driver_id: str,
        *,
        name: str | None = None,
        email: str | None = None,
        licence_expiry: dt.date | None = None,
        is_admin: bool | None = None,
    ) -> Driver:
        """Change the given fields (a renewed licence, a new e-mail address); None keeps one."""
        changes: dict[str, object] = {}
        if name is not None:
            changes["name"] = v.text(name, "name")
        if email is not None:
            changes["email"] = v.email(email)
        if licence_expiry is not None:
            changes["licence_expiry"] = self._date(v.day(licence_expiry, "licence_expiry"))
        if is_admin is not None:
            if not isinstance(is_admin, bool):
                raise InvalidValue("is_admin", f"expected true or false, got {is_admin!r}")
            changes["is_admin"] = is_admin
        with self._tx():
            self._get_driver(driver_id)
            if changes:
                assignments = ", ".join(f"{k} = ?" for k in changes)
                self._execute(
                    f"UPDATE drivers SET {assignments} WHERE driver_id = ?",
                    (*changes.values(), driver_id),
                )
            return self._get_driver(driver_id)

    def _account_table(self, account_id: str) -> tuple[str, str]:
        if isinstance(account_id, str) and v.MEMBER_ID.fullmatch(account_id):
            return "members", "member_id"
        if isinstance(account_id, str) and v.DRIVER_ID.fullmatch(account_id):
            return "drivers", "driver_id"
        raise InvalidValue(
            "account_id",
            f"expected a member ID (8) or a driver ID (11 characters), got {account_id!r}",
        )

    def set_password_hash(
        self, account_id: str, password_hash: str | None, *, must_change: bool = False
    ) -> None:
        """Store a member's or driver's password hash (made by the API's auth module);
        `must_change`: an initial password, to be replaced at the first login (P-WEB-6)."""
        table, key = self._account_table(account_id)
        with self._tx():
            cur = self._execute(
                f"UPDATE {table} SET password_hash = ?, password_must_change = ? WHERE {key} = ?",
                (password_hash, must_change, account_id),
            )
            if cur.rowcount == 0:
                raise NotFound(table[:-1], account_id)

    def password_must_change(self, account_id: str) -> bool:
        """Whether the account still has its initial password (P-WEB-6)."""
        table, key = self._account_table(account_id)
        with self._tx(write=False):
            row = self._one(
                f"SELECT password_must_change FROM {table} WHERE {key} = ?", (account_id,)
            )
        if row is None:
            raise NotFound(table[:-1], account_id)
        return bool(row[0])

    def password_hash(self, account_id: str) -> str | None:
        table, key = self._account_table(account_id)
        with self._tx(write=False):
            row = self._one(f"SELECT password_hash FROM {table} WHERE {key} = ?", (account_id,))
        if row is None:
            raise NotFound(table[:-1], account_id)
        return None if row[0] is None else str(row[0])

    # ---- cards ------------------------------------------------------------------------------

    def add_card(self, driver_id: str, card_hash: str, *, strong: bool = False) -> Card:
        """Register a card (by the keyed hash of its IDm) to a driver."""
        card_hash = v.card_hash(card_hash)
        if not isinstance(strong, bool):
            raise InvalidValue("strong", f"expected true or false, got {strong!r}")
        now = self._now()
        with self._tx():
            self._get_driver(driver_id)
            row = self._one(f"SELECT {CARD_COLS} FROM cards WHERE card_hash = ?", (card_hash,))
            if row is not None:
                card = self._card(row)
                if not card.active:
                    raise Conflict(
                        REVOKED,
                        f"card {card_hash[:12]}… was revoked at {card.revoked_at:%Y-%m-%d %H:%M} "
                        "UTC; a revoked card is never registered again (U-CARD-4)",
                    )
                whose = "this driver" if card.driver_id == driver_id else card.driver_id
                raise Conflict(
                    DUPLICATE, f"card {card_hash[:12]}… is already registered to {whose}"
                )
            self._execute(
                "INSERT INTO cards (card_hash, driver_id, strong, registered_at) "
                "VALUES (?, ?, ?, ?)",
                (card_hash, driver_id, strong, self._time(now)),
            )
        return Card(card_hash, driver_id, strong, now, None)

    def revoke_card(self, card_hash: str) -> Card:
        """Revoke a card at once (lost or stolen); revoking it again changes nothing."""
        card_hash = v.card_hash(card_hash)
        now = self._now()
        with self._tx():
            self._execute(
                "UPDATE cards SET revoked_at = ? WHERE card_hash = ? AND revoked_at IS NULL",
                (self._time(now), card_hash),
            )
            return self._get_card(card_hash)

    def get_card(self, card_hash: str) -> Card:
        with self._tx(write=False):
            return self._get_card(card_hash)

    def list_cards(
        self,
        *,
        driver_id: str | None = None,
        member_id: str | None = None,
        active_only: bool = False,
    ) -> list[Card]:
        where, params = ["1 = 1"], []
        if driver_id is not None:
            where.append("driver_id = ?")
            params.append(driver_id)
        if member_id is not None:
            where.append("driver_id IN (SELECT driver_id FROM drivers WHERE member_id = ?)")
            params.append(member_id)
        if active_only:
            where.append("revoked_at IS NULL")
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {CARD_COLS} FROM cards WHERE {' AND '.join(where)} "
                "ORDER BY driver_id, registered_at",
                params,
            )
        return [self._card(r) for r in rows]

    # ---- stations and cars ------------------------------------------------------------------

    def add_station(
        self, station_id: str, *, name: str, lat: float, lon: float, radius_m: float
    ) -> Station:
        station_id = v.name_id(station_id, "station_id")
        station = Station(
            station_id,
            v.text(name, "name"),
            v.number(lat, "lat", -90, 90),
            v.number(lon, "lon", -180, 180),
            v.number(radius_m, "radius_m", 1, 100_000),
        )
        with self._tx():
            if self._one("SELECT 1 FROM stations WHERE station_id = ?", (station_id,)):
                raise Conflict(DUPLICATE, f"station {station_id} already exists")
            self._execute(
                f"INSERT INTO stations ({STATION_COLS}) VALUES (?, ?, ?, ?, ?)",
                (station.station_id, station.name, station.lat, station.lon, station.radius_m),
            )
        return station

    def get_station(self, station_id: str) -> Station:
        with self._tx(write=False):
            row = self._one(
                f"SELECT {STATION_COLS} FROM stations WHERE station_id = ?", (station_id,)
            )
        if row is None:
            raise NotFound("station", station_id)
        return self._station(row)

    def list_stations(self) -> list[Station]:
        with self._tx(write=False):
            rows = self._all(f"SELECT {STATION_COLS} FROM stations ORDER BY station_id")
        return [self._station(r) for r in rows]

    def add_car(self, car_id: str, *, station_id: str, name: str = "", kind: str = "") -> Car:
        """A car parked at `station_id`; `kind` picks the policy's per-kind rules."""
        car_id = v.name_id(car_id, "car_id")
        for field, value in (("name", name), ("kind", kind)):
            if not isinstance(value, str):
                raise InvalidValue(field, f"expected a text, got {value!r}")
        now = self._now()
        with self._tx():
            if self._one("SELECT 1 FROM stations WHERE station_id = ?", (station_id,)) is None:
                raise NotFound("station", station_id)
            if self._one("SELECT 1 FROM cars WHERE car_id = ?", (car_id,)):
                raise Conflict(DUPLICATE, f"car {car_id} already exists")
            self._execute(
                f"INSERT INTO cars ({CAR_COLS}) VALUES (?, ?, ?, ?, ?)",
                (car_id, station_id, name.strip(), kind.strip(), self._time(now)),
            )
        return Car(car_id, station_id, name.strip(), kind.strip(), now)

    def get_car(self, car_id: str) -> Car:
        with self._tx(write=False):
            return self._get_car(car_id)

    def list_cars(self, station_id: str | None = None) -> list[Car]:
        where, params = ("WHERE station_id = ?", (station_id,)) if station_id else ("", ())
        with self._tx(write=False):
            rows = self._all(f"SELECT {CAR_COLS} FROM cars {where} ORDER BY car_id", params)
        return [self._car(r) for r in rows]

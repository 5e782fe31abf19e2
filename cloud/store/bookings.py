"""The store's bookings: reservations with their history, trips and refuels, invoices.

The store applies no booking rule of SPEC §2 except the integrity ones, atomically: no two live
reservations of a car within their buffer (C-CAR-1), none of a driver's overlapping (C-DRV-1),
and, when asked, a ceiling on a member's open reservations. The rules (`cloud.booking`,
`cloud.fees`, `cloud.penalties`) decide; the API then writes here with explicit values.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cloud.store import validate as v
from cloud.store.core import (
    CHANGE_COLS,
    INVOICE_COLS,
    LIVE,
    REFUEL_COLS,
    RES_COLS,
    RES_SELECT,
    TRIP_COLS,
    StoreCore,
    equal_to,
    slot,
)
from cloud.store.errors import (
    CAR_BUFFER,
    DRIVER_OVERLAP,
    MEMBER_LIMIT,
    STALE,
    STATUS,
    Conflict,
    InvalidValue,
    NotFound,
)
from cloud.store.records import (
    LIVE_STATUSES,
    STATUSES,
    Invoice,
    Refuel,
    Reservation,
    ReservationChange,
    Trip,
)

REFUEL_KINDS = ("receipt", "emergency")


class BookingStore(StoreCore):
    """Reservations, their history, trips, refuels and invoices."""

    # ---- reservations -----------------------------------------------------------------------

    def create_reservation(
        self,
        *,
        car_id: str,
        driver_id: str,
        start: dt.datetime,
        end: dt.datetime,
        buffer_minutes: int,
        member_open_limit: int | None = None,
    ) -> Reservation:
        """Book `car_id` for `driver_id` from `start` to `end`, atomically refusing (Conflict):
        another live reservation of the car less than `buffer_minutes` away (car_buffer,
        C-CAR-1), one of the driver's own that overlaps (driver_overlap, C-DRV-1), and — when
        `member_open_limit` is given — a member who already holds that many open reservations
        (member_limit, C-MAX-1 or a C-PEN-1 limit)."""
        start, end = _times(start, end)
        buffer_minutes = v.count(buffer_minutes, "buffer_minutes")
        if member_open_limit is not None:
            v.count(member_open_limit, "member_open_limit")
        now = self._now()
        reservation_id = uuid.uuid4().hex
        with self._tx():
            self._get_car(car_id, for_update=True)
            driver = self._get_driver(driver_id, for_update=True)
            if member_open_limit is not None:
                self._get_member(driver.member_id, for_update=True)  # serialise the count
                held = self._count_open(driver.member_id, now)
                if held >= member_open_limit:
                    raise Conflict(
                        MEMBER_LIMIT,
                        f"member {driver.member_id} already holds {held} open reservations "
                        f"(at most {member_open_limit})",
                    )
            self._check_free(car_id, driver_id, start, end, buffer_minutes, exclude="")
            slot_start, slot_end = slot(start, end, buffer_minutes)
            self._execute(
                f"INSERT INTO reservations ({RES_COLS}, slot_start, slot_end) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'reserved', 0, 0, NULL, 1, ?, ?, ?, ?)",
                (reservation_id, car_id, driver_id, driver.member_id, self._time(start),
                 self._time(end), buffer_minutes, self._time(now), self._time(now),
                 self._time(slot_start), self._time(slot_end)),
            )  # fmt: skip
            self._record(reservation_id, now, "created", None, None, start, end)
        return Reservation(
            reservation_id, car_id, driver_id, driver.member_id, start, end, buffer_minutes,
            "reserved", 0, 0, None, 1, now, now,
        )  # fmt: skip

    def change_reservation(
        self,
        reservation_id: str,
        *,
        start: dt.datetime,
        end: dt.datetime,
        buffer_minutes: int,
        expected_version: int | None = None,
    ) -> Reservation:
        """New times for a reserved (not started) reservation (change_count + 1), with the
        checks of create."""
        start, end = _times(start, end)
        buffer_minutes = v.count(buffer_minutes, "buffer_minutes")
        now = self._now()
        with self._tx():
            old = self._for_write(reservation_id, expected_version, ("reserved",), "changed")
            self._check_free(old.car_id, old.driver_id, start, end, buffer_minutes, reservation_id)
            self._set_times(old, start, end, buffer_minutes, now, "change_count")
            self._record(reservation_id, now, "changed", old.start, old.end, start, end)
            return self._get_reservation(reservation_id)

    def extend_reservation(
        self,
        reservation_id: str,
        *,
        end: dt.datetime,
        buffer_minutes: int,
        expected_version: int | None = None,
    ) -> Reservation:
        """A later end for a reserved or in-use reservation (extension_count + 1), refused like
        create when it would reach into the buffer of the car's next reservation."""
        end = v.instant(end, "end")
        buffer_minutes = v.count(buffer_minutes, "buffer_minutes")
        now = self._now()
        with self._tx():
            old = self._for_write(reservation_id, expected_version, LIVE_STATUSES, "extended")
            if end <= old.end:
                raise InvalidValue(
                    "end",
                    f"an extension must end after {old.end.isoformat()}, got {end.isoformat()}",
                )
            self._check_free(
                old.car_id, old.driver_id, old.start, end, buffer_minutes, reservation_id
            )
            self._set_times(old, old.start, end, buffer_minutes, now, "extension_count")
            self._record(reservation_id, now, "extended", old.start, old.end, old.start, end)
            return self._get_reservation(reservation_id)

    def cancel_reservation(
        self, reservation_id: str, *, fee: int, expected_version: int | None = None
    ) -> Reservation:
        """Cancel a reserved reservation, recording the cancellation fee (yen) the rules
        computed (F-CAN-1)."""
        fee = v.count(fee, "fee")
        now = self._now()
        with self._tx():
            old = self._for_write(reservation_id, expected_version, ("reserved",), "cancelled")
            self._execute(
                "UPDATE reservations SET status = 'cancelled', cancellation_fee = ?, "
                "version = version + 1, updated_at = ? WHERE reservation_id = ?",
                (fee, self._time(now), reservation_id),
            )
            self._record(reservation_id, now, "cancelled", old.start, old.end, None, None)
            return self._get_reservation(reservation_id)

    def get_reservation(self, reservation_id: str) -> Reservation:
        with self._tx(write=False):
            return self._get_reservation(reservation_id)

    def list_reservations(
        self,
        *,
        car_id: str | None = None,
        driver_id: str | None = None,
        member_id: str | None = None,
        statuses: Sequence[str] | None = None,
        ends_after: dt.datetime | None = None,
        starts_before: dt.datetime | None = None,
    ) -> list[Reservation]:
        """Reservations matching every given filter, by start time."""
        where, params = equal_to("r.", car_id=car_id, driver_id=driver_id, member_id=member_id)
        if statuses is not None:
            bad = [s for s in statuses if s not in STATUSES]
            if bad:
                raise InvalidValue("statuses", f"unknown status {bad[0]!r}; expected {STATUSES}")
            marks = ", ".join("?" for _ in statuses)
            where.append(f"r.status IN ({marks})" if statuses else "1 = 0")
            params.extend(statuses)
        if ends_after is not None:
            where.append("r.ends_at > ?")
            params.append(self._time(v.instant(ends_after, "ends_after")))
        if starts_before is not None:
            where.append("r.starts_at < ?")
            params.append(self._time(v.instant(starts_before, "starts_before")))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._tx(write=False):
            rows = self._all(
                f"{RES_SELECT} {clause} ORDER BY r.starts_at, r.reservation_id", params
            )
        return [self._reservation(r) for r in rows]

    def count_open_reservations(self, member_id: str, at: dt.datetime | None = None) -> int:
        """A member's open reservations at `at` (default now): in use, or reserved and not over."""
        at = self._now() if at is None else v.instant(at, "at")
        with self._tx(write=False):
            return self._count_open(member_id, at)

    def _count_open(self, member_id: str, at: dt.datetime) -> int:
        row = self._one(
            "SELECT count(*) FROM reservations WHERE member_id = ? "
            "AND (status = 'in_use' OR (status = 'reserved' AND ends_at > ?))",
            (member_id, self._time(at)),
        )
        return int(row[0])

    def reservation_history(self, reservation_id: str) -> list[ReservationChange]:
        """Every change of the reservation's times and status, oldest first."""
        with self._tx(write=False):
            self._get_reservation(reservation_id)
            rows = self._all(
                f"SELECT {CHANGE_COLS} FROM reservation_changes WHERE reservation_id = ? "
                "ORDER BY change_id",
                (reservation_id,),
            )
        return [self._change(r) for r in rows]

    def _for_write(
        self, reservation_id: str, expected_version: int | None, statuses: Sequence[str], verb: str
    ) -> Reservation:
        """The reservation, locked (after its car and, for new times, its driver) and checked."""
        row = self._one(
            "SELECT car_id, driver_id FROM reservations WHERE reservation_id = ?", (reservation_id,)
        )
        if row is None:
            raise NotFound("reservation", reservation_id)
        self._get_car(row[0], for_update=True)
        if verb in ("changed", "extended"):
            self._get_driver(row[1], for_update=True)
        old = self._get_reservation(reservation_id, for_update=True)
        if expected_version is not None and old.version != expected_version:
            raise Conflict(
                STALE,
                f"reservation {reservation_id} changed meanwhile (version {old.version}, "
                f"expected {expected_version}); read it again",
            )
        if old.status not in statuses:
            raise Conflict(
                STATUS, f"reservation {reservation_id} is {old.status}; it cannot be {verb}"
            )
        return old

    def _check_free(
        self,
        car_id: str,
        driver_id: str,
        start: dt.datetime,
        end: dt.datetime,
        buffer_minutes: int,
        exclude: str,
    ) -> None:
        slot_start, slot_end = slot(start, end, buffer_minutes)
        row = self._one(
            f"SELECT reservation_id FROM reservations WHERE car_id = ? AND status IN {LIVE} "
            "AND slot_start < ? AND ? < slot_end AND reservation_id <> ? LIMIT 1",
            (car_id, self._time(slot_end), self._time(slot_start), exclude),
        )
        if row is not None:
            raise Conflict(
                CAR_BUFFER,
                f"car {car_id} has another reservation less than {buffer_minutes} minutes from "
                f"{_span(start, end)}",
                other=row[0],
            )
        row = self._one(
            f"SELECT reservation_id FROM reservations WHERE driver_id = ? AND status IN {LIVE} "
            "AND starts_at < ? AND ? < ends_at AND reservation_id <> ? LIMIT 1",
            (driver_id, self._time(end), self._time(start), exclude),
        )
        if row is not None:
            raise Conflict(
                DRIVER_OVERLAP,
                f"driver {driver_id} already has a reservation overlapping {_span(start, end)}",
                other=row[0],
            )

    def _set_times(
        self,
        old: Reservation,
        start: dt.datetime,
        end: dt.datetime,
        buffer_minutes: int,
        now: dt.datetime,
        counter: str,
    ) -> None:
        slot_start, slot_end = slot(start, end, buffer_minutes)
        self._execute(
            "UPDATE reservations SET starts_at = ?, ends_at = ?, buffer_minutes = ?, "
            f"slot_start = ?, slot_end = ?, {counter} = {counter} + 1, version = version + 1, "
            "updated_at = ? WHERE reservation_id = ?",
            (self._time(start), self._time(end), buffer_minutes, self._time(slot_start),
             self._time(slot_end), self._time(now), old.reservation_id),
        )  # fmt: skip

    def _record(
        self,
        reservation_id: str,
        at: dt.datetime,
        kind: str,
        old_start: dt.datetime | None,
        old_end: dt.datetime | None,
        new_start: dt.datetime | None,
        new_end: dt.datetime | None,
    ) -> None:
        times = [
            None if t is None else self._time(t) for t in (old_start, old_end, new_start, new_end)
        ]
        self._execute(
            "INSERT INTO reservation_changes (reservation_id, at, kind, old_start, old_end, "
            "new_start, new_end) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (reservation_id, self._time(at), kind, *times),
        )

    # ---- trips ------------------------------------------------------------------------------

    def start_trip(
        self,
        reservation_id: str,
        *,
        started_at: dt.datetime,
        started_by: str = "card",
        odometer_km: float | None = None,
        fuel_pct: float | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> Trip:
        """The car reported the start of a reserved reservation's trip: it becomes `in_use`.
        (In history, `started` carries the actual start as new_start.)"""
        started_at = v.instant(started_at, "started_at")
        if started_by not in ("card", "remote"):
            raise InvalidValue("started_by", f"expected 'card' or 'remote', got {started_by!r}")
        values = _readings(odometer_km, fuel_pct, lat, lon)
        now = self._now()
        with self._tx():
            self._for_write(reservation_id, None, ("reserved",), "started")
            self._execute(
                "UPDATE reservations SET status = 'in_use', version = version + 1, "
                "updated_at = ? WHERE reservation_id = ?",
                (self._time(now), reservation_id),
            )
            self._execute(
                "INSERT INTO trips (reservation_id, started_at, started_by, odometer_start_km, "
                "fuel_start_pct, lat_start, lon_start) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (reservation_id, self._time(started_at), started_by, *values),
            )
            self._record(reservation_id, now, "started", None, None, started_at, None)
            return self._get_trip(reservation_id)

    def end_trip(
        self,
        reservation_id: str,
        *,
        ended_at: dt.datetime,
        odometer_km: float | None = None,
        fuel_pct: float | None = None,
        lat: float | None = None,
        lon: float | None = None,
        overtime_minutes: int = 0,
        unauthorised_extension: bool = False,
    ) -> Trip:
        """The car reported the end of a trip in use: the reservation becomes `completed`.
        (In history, `returned` carries the actual return as new_end.)"""
        ended_at = v.instant(ended_at, "ended_at")
        values = _readings(odometer_km, fuel_pct, lat, lon)
        overtime_minutes = v.count(overtime_minutes, "overtime_minutes")
        if not isinstance(unauthorised_extension, bool):
            raise InvalidValue(
                "unauthorised_extension", f"expected true or false, got {unauthorised_extension!r}"
            )
        now = self._now()
        with self._tx():
            self._for_write(reservation_id, None, ("in_use",), "returned")
            trip = self._get_trip(reservation_id)
            if ended_at < trip.started_at:
                raise InvalidValue(
                    "ended_at",
                    f"the trip started at {trip.started_at.isoformat()}, "
                    f"got {ended_at.isoformat()}",
                )
            self._execute(
                "UPDATE reservations SET status = 'completed', version = version + 1, "
                "updated_at = ? WHERE reservation_id = ?",
                (self._time(now), reservation_id),
            )
            self._execute(
                "UPDATE trips SET ended_at = ?, odometer_end_km = ?, fuel_end_pct = ?, "
                "lat_end = ?, lon_end = ?, overtime_minutes = ?, unauthorised_extension = ? "
                "WHERE reservation_id = ?",
                (self._time(ended_at), *values, overtime_minutes, unauthorised_extension,
                 reservation_id),
            )  # fmt: skip
            self._record(reservation_id, now, "returned", None, None, None, ended_at)
            return self._get_trip(reservation_id)

    def get_trip(self, reservation_id: str) -> Trip:
        with self._tx(write=False):
            return self._get_trip(reservation_id)

    def list_trips(
        self,
        *,
        member_id: str | None = None,
        driver_id: str | None = None,
        car_id: str | None = None,
        started_after: dt.datetime | None = None,
    ) -> list[Trip]:
        """Trips matching every given filter, by start time."""
        where, params = equal_to("r.", member_id=member_id, driver_id=driver_id, car_id=car_id)
        if started_after is not None:
            where.append("t.started_at > ?")
            params.append(self._time(v.instant(started_after, "started_after")))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        cols = ", ".join(f"t.{c.strip()}" for c in TRIP_COLS.split(","))
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {cols} FROM trips t JOIN reservations r "
                f"ON r.reservation_id = t.reservation_id {clause} ORDER BY t.started_at",
                params,
            )
        return [self._trip(r) for r in rows]

    def add_refuel(
        self,
        reservation_id: str,
        *,
        at: dt.datetime,
        litres: float,
        fuel_card: bool = True,
        amount_yen: int | None = None,
        kind: str | None = None,
        recorded_by: str | None = None,
    ) -> Refuel:
        """A refuelling during the trip (F-FUEL-1), as the driver or the car reported it, or as
        the operator entered it from the receipt (O-ADM-1): `kind` receipt (the car's fuel card)
        or emergency (paid by the driver, to reimburse; never discounted)."""
        at = v.instant(at, "at")
        litres = v.number(litres, "litres", 0.01, 1000)
        if kind is not None:
            if kind not in REFUEL_KINDS:
                raise InvalidValue("kind", f"expected one of {REFUEL_KINDS}, got {kind!r}")
            fuel_card = kind == "receipt"
        if not isinstance(fuel_card, bool):
            raise InvalidValue("fuel_card", f"expected true or false, got {fuel_card!r}")
        if amount_yen is not None and (
            isinstance(amount_yen, bool) or not isinstance(amount_yen, int) or amount_yen < 0
        ):
            raise InvalidValue("amount_yen", f"expected whole yen, 0 or more, got {amount_yen!r}")
        with self._tx():
            self._get_trip(reservation_id)
            row = self._one(
                "INSERT INTO refuels (reservation_id, at, litres, fuel_card, amount_yen, kind, "
                f"recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {REFUEL_COLS}",
                (
                    reservation_id,
                    self._time(at),
                    litres,
                    fuel_card,
                    amount_yen,
                    kind or ("receipt" if fuel_card else "emergency"),
                    recorded_by,
                ),
            )
        return self._refuel(row)

    def recent_refuels(self, limit: int = 100) -> list[Refuel]:
        """The latest refuels of every trip, newest first (the console's list)."""
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {REFUEL_COLS} FROM refuels ORDER BY refuel_id DESC LIMIT ?", (limit,)
            )
        return [self._refuel(r) for r in rows]

    def list_refuels(self, reservation_id: str) -> list[Refuel]:
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {REFUEL_COLS} FROM refuels WHERE reservation_id = ? ORDER BY refuel_id",
                (reservation_id,),
            )
        return [self._refuel(r) for r in rows]

    def unauthorised_extensions(
        self, member_id: str, since: dt.datetime | None = None
    ) -> tuple[dt.datetime, ...]:
        """C-PEN-1: the (extended) ends of the member's reservations returned late without an
        extension (trips ended with `unauthorised_extension`), oldest first, for
        `cloud.model.Member.unauthorised_extensions`."""
        where, params = "r.member_id = ? AND t.unauthorised_extension = ?", [member_id, True]
        if since is not None:
            where += " AND r.ends_at >= ?"
            params.append(self._time(v.instant(since, "since")))
        with self._tx(write=False):
            rows = self._all(
                "SELECT r.ends_at FROM trips t JOIN reservations r "
                f"ON r.reservation_id = t.reservation_id WHERE {where} ORDER BY r.ends_at",
                params,
            )
        return tuple(self._read_time(r[0]) for r in rows)

    # ---- invoices ---------------------------------------------------------------------------

    def add_invoice(
        self,
        member_id: str,
        lines: Sequence[Mapping[str, Any]],
        *,
        reservation_id: str | None = None,
        total: int | None = None,
    ) -> Invoice:
        """An invoice of the given lines, each an object with a `code` and whole `yen` (as
        `cloud.fees.InvoiceLine`; other keys such as labels are kept). Its total is the sum of
        the lines; a `total` given that differs is refused."""
        checked: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            if not isinstance(line, Mapping):
                raise InvalidValue(f"lines[{i}]", f"expected an object, got {line!r}")
            yen = line.get("yen")
            if isinstance(yen, bool) or not isinstance(yen, int):
                raise InvalidValue(f"lines[{i}].yen", f"expected whole yen, got {yen!r}")
            v.text(line.get("code"), f"lines[{i}].code")
            checked.append(dict(line))
        line_sum = sum(int(line["yen"]) for line in checked)
        if total is not None and total != line_sum:
            raise InvalidValue("total", f"the lines add up to {line_sum} yen, got {total!r}")
        total = line_sum
        now = self._now()
        invoice_id = uuid.uuid4().hex
        with self._tx():
            self._get_member(member_id)
            if reservation_id is not None:
                reservation = self._get_reservation(reservation_id)
                if reservation.member_id != member_id:
                    raise InvalidValue(
                        "reservation_id",
                        f"reservation {reservation_id} belongs to member {reservation.member_id}, "
                        f"not {member_id}",
                    )
            self._execute(
                f"INSERT INTO invoices ({INVOICE_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    invoice_id,
                    member_id,
                    reservation_id,
                    self._time(now),
                    self._json(checked),
                    total,
                ),
            )
        return Invoice(invoice_id, member_id, reservation_id, now, tuple(checked), total)

    def get_invoice(self, invoice_id: str) -> Invoice:
        with self._tx(write=False):
            row = self._one(
                f"SELECT {INVOICE_COLS} FROM invoices WHERE invoice_id = ?", (invoice_id,)
            )
        if row is None:
            raise NotFound("invoice", invoice_id)
        return self._invoice(row)

    def list_invoices(self, member_id: str) -> list[Invoice]:
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {INVOICE_COLS} FROM invoices WHERE member_id = ? ORDER BY issued_at",
                (member_id,),
            )
        return [self._invoice(r) for r in rows]


def _times(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start, end = v.instant(start, "start"), v.instant(end, "end")
    if end <= start:
        raise InvalidValue(
            "end", f"must be after the start {start.isoformat()}, got {end.isoformat()}"
        )
    return start, end


def _span(start: dt.datetime, end: dt.datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M}–{end:%Y-%m-%d %H:%M} UTC"


def _readings(
    odometer_km: float | None, fuel_pct: float | None, lat: float | None, lon: float | None
) -> tuple[float | None, ...]:
    return (
        v.optional_number(odometer_km, "odometer_km", 0, 10_000_000),
        v.optional_number(fuel_pct, "fuel_pct", 0, 100),
        v.optional_number(lat, "lat", -90, 90),
        v.optional_number(lon, "lon", -180, 180),
    )

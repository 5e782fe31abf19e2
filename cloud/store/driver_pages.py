"""The store's part of the drivers' pages (SPEC P-WEB-6, P-WEB-7): change applications and
damage reports with their photos (tables of migration m0003).

- A change application is what a driver asks the operator to change (address, licence…);
  the operator approves or rejects it on the console (`decide_change_application`). Approving
  applies at once what the drivers table holds (name, licence expiry), in the same transaction;
  the rest (an address, a licence number) is the operator's record.
- A damage report (damage, dirt, a flat tyre) is kept with its reservation and car, with its
  photos; it raises a console alert (O-ALERT-1) in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.store import validate as v
from cloud.store.core import StoreCore
from cloud.store.errors import Conflict, InvalidValue, NotFound

APPLICATION_STATUSES = ("pending", "approved", "rejected")
# what a driver may apply for (P-WEB-6: the rest of the guide's §8 details)
APPLICATION_FIELDS = ("name", "address", "phone", "licence_number", "licence_expiry")
DAMAGE_KINDS = ("damage", "dirt", "flat_tyre", "other")
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")

_APP_COLS = (
    "application_id, driver_id, fields, note, status, created_at, decided_at, decided_by, reason"
)
_REPORT_COLS = "report_id, reservation_id, driver_id, car_id, kind, note, created_at"


@dataclass(frozen=True)
class ChangeApplication:
    application_id: int
    driver_id: str
    fields: dict[str, str]  # field name -> the new value asked for
    note: str
    status: str  # pending | approved | rejected
    created_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None
    reason: str


@dataclass(frozen=True)
class DamagePhoto:
    photo_id: int
    content_type: str
    size: int


@dataclass(frozen=True)
class DamageReport:
    report_id: int
    reservation_id: str
    driver_id: str
    car_id: str
    kind: str  # damage | dirt | flat_tyre | other
    note: str
    created_at: dt.datetime
    photos: tuple[DamagePhoto, ...]


class DriverPagesStore(StoreCore):
    """Change applications and damage reports."""

    # ---- change applications ----------------------------------------------------------------

    def add_change_application(
        self, driver_id: str, fields: Mapping[str, str], note: str = ""
    ) -> ChangeApplication:
        """A driver's application to change `fields` (each one of APPLICATION_FIELDS)."""
        if not isinstance(fields, Mapping) or not fields:
            raise InvalidValue("fields", "name at least one detail to change")
        checked: dict[str, str] = {}
        for name, value in fields.items():
            if name not in APPLICATION_FIELDS:
                raise InvalidValue(
                    "fields", f"unknown detail {name!r}; expected {APPLICATION_FIELDS}"
                )
            checked[name] = v.text(value, f"fields.{name}")[:500]
        if "licence_expiry" in checked:
            try:
                dt.date.fromisoformat(checked["licence_expiry"])
            except ValueError:
                raise InvalidValue(
                    "fields.licence_expiry",
                    f"expected YYYY-MM-DD, got {checked['licence_expiry']!r}",
                ) from None
        if not isinstance(note, str):
            raise InvalidValue("note", f"expected a text, got {note!r}")
        now = self._now()
        with self._tx():
            self._get_driver(driver_id)
            row = self._one(
                "INSERT INTO change_applications (driver_id, fields, note, created_at) "
                f"VALUES (?, ?, ?, ?) RETURNING {_APP_COLS}",
                (driver_id, self._json(checked), note.strip()[:2000], self._time(now)),
            )
            return self._application(row)

    def get_change_application(self, application_id: int) -> ChangeApplication:
        with self._tx(write=False):
            return self._get_application(application_id)

    def list_change_applications(
        self, status: str | None = None, *, driver_id: str | None = None
    ) -> list[ChangeApplication]:
        """Applications, oldest first; `status` (pending, approved, rejected) and `driver_id`
        filter when given."""
        where, params = [], []
        if status is not None:
            if status not in APPLICATION_STATUSES:
                raise InvalidValue(
                    "status", f"expected one of {APPLICATION_STATUSES}, got {status!r}"
                )
            where.append("status = ?")
            params.append(status)
        if driver_id is not None:
            where.append("driver_id = ?")
            params.append(driver_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {_APP_COLS} FROM change_applications {clause} "
                "ORDER BY created_at, application_id",
                params,
            )
        return [self._application(r) for r in rows]

    def decide_change_application(
        self, application_id: int, approve: bool, by: str, reason: str = ""
    ) -> ChangeApplication:
        """The operator's decision on a pending application (Conflict `status` when it was
        decided already). Approving applies the name and the licence expiry to the driver."""
        if not isinstance(approve, bool):
            raise InvalidValue("approve", f"expected true or false, got {approve!r}")
        by = v.text(by, "by")
        if not isinstance(reason, str):
            raise InvalidValue("reason", f"expected a text, got {reason!r}")
        now = self._now()
        with self._tx():
            app = self._get_application(application_id, for_update=True)
            if app.status != "pending":
                raise Conflict("status", f"application {application_id} was already {app.status}")
            if approve:
                changes: dict[str, object] = {}
                if "name" in app.fields:
                    changes["name"] = app.fields["name"]
                if "licence_expiry" in app.fields:
                    expiry = dt.date.fromisoformat(app.fields["licence_expiry"])
                    changes["licence_expiry"] = self._date(expiry)
                if changes:
                    assignments = ", ".join(f"{k} = ?" for k in changes)
                    self._execute(
                        f"UPDATE drivers SET {assignments} WHERE driver_id = ?",
                        (*changes.values(), app.driver_id),
                    )
            self._execute(
                "UPDATE change_applications SET status = ?, decided_at = ?, decided_by = ?, "
                "reason = ? WHERE application_id = ?",
                (
                    "approved" if approve else "rejected",
                    self._time(now),
                    by,
                    reason.strip()[:2000],
                    application_id,
                ),
            )
            return self._get_application(application_id)

    def _get_application(self, application_id: int, for_update: bool = False) -> ChangeApplication:
        if isinstance(application_id, bool) or not isinstance(application_id, int):
            raise InvalidValue("application_id", f"expected a number, got {application_id!r}")
        lock = self._FOR_UPDATE if for_update else ""
        row = self._one(
            f"SELECT {_APP_COLS} FROM change_applications WHERE application_id = ?{lock}",
            (application_id,),
        )
        if row is None:
            raise NotFound("change_application", str(application_id))
        return self._application(row)

    def _application(self, row: Any) -> ChangeApplication:
        return ChangeApplication(
            int(row[0]), row[1], dict(self._read_json(row[2])), row[3], row[4],
            self._read_time(row[5]), self._opt_time(row[6]), row[7], row[8],
        )  # fmt: skip

    # ---- damage reports ---------------------------------------------------------------------

    def add_damage_report(
        self,
        reservation_id: str,
        *,
        driver_id: str,
        kind: str,
        note: str = "",
        photos: Sequence[tuple[str, bytes]] = (),
    ) -> DamageReport:
        """A driver's report on the reservation's car, with photos (content type, bytes); the
        caller has checked the bytes are an image of that type. Raises a console alert."""
        if kind not in DAMAGE_KINDS:
            raise InvalidValue("kind", f"expected one of {DAMAGE_KINDS}, got {kind!r}")
        if not isinstance(note, str):
            raise InvalidValue("note", f"expected a text, got {note!r}")
        for i, (content_type, data) in enumerate(photos):
            if content_type not in PHOTO_TYPES or not isinstance(data, bytes) or not data:
                raise InvalidValue(f"photos[{i}]", f"expected one of {PHOTO_TYPES} with its bytes")
        now = self._now()
        with self._tx():
            reservation = self._get_reservation(reservation_id)
            self._get_driver(driver_id)
            row = self._one(
                "INSERT INTO damage_reports (reservation_id, driver_id, car_id, kind, note, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING report_id",
                (
                    reservation_id,
                    driver_id,
                    reservation.car_id,
                    kind,
                    note.strip()[:2000],
                    self._time(now),
                ),
            )
            report_id = int(row[0])
            for content_type, data in photos:
                self._execute(
                    "INSERT INTO damage_photos (report_id, content_type, data) VALUES (?, ?, ?)",
                    (report_id, content_type, data),
                )
            self._execute(
                "INSERT INTO alerts (key, kind, car_id, message, raised_at) VALUES (?, ?, ?, ?, ?)",
                (
                    f"damage_report:{report_id}",
                    "damage_report",
                    reservation.car_id,
                    f"{kind} reported by {driver_id} before reservation {reservation_id}"
                    + (f": {note.strip()[:200]}" if note.strip() else ""),
                    self._time(now),
                ),
            )
            return self._reports("WHERE report_id = ?", (report_id,))[0]

    def list_damage_reports(
        self, *, car_id: str | None = None, reservation_id: str | None = None
    ) -> list[DamageReport]:
        """Reports of a car or a reservation (or all), newest first, with their photos' sizes."""
        where, params = [], []
        for column, value in (("car_id", car_id), ("reservation_id", reservation_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._tx(write=False):
            return self._reports(clause, params)

    def damage_photo(self, photo_id: int) -> tuple[int, str, bytes]:
        """(report_id, content type, bytes) of one photo."""
        if isinstance(photo_id, bool) or not isinstance(photo_id, int):
            raise InvalidValue("photo_id", f"expected a number, got {photo_id!r}")
        with self._tx(write=False):
            row = self._one(
                "SELECT report_id, content_type, data FROM damage_photos WHERE photo_id = ?",
                (photo_id,),
            )
        if row is None:
            raise NotFound("damage_photo", str(photo_id))
        return int(row[0]), row[1], bytes(row[2])

    def _reports(self, clause: str, params: Sequence[object]) -> list[DamageReport]:
        rows = self._all(
            f"SELECT {_REPORT_COLS} FROM damage_reports {clause} "
            "ORDER BY created_at DESC, report_id DESC",
            params,
        )
        reports = []
        for r in rows:
            photos = self._all(
                "SELECT photo_id, content_type, length(data) FROM damage_photos "
                "WHERE report_id = ? ORDER BY photo_id",
                (r[0],),
            )
            reports.append(
                DamageReport(
                    int(r[0]),
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    self._read_time(r[6]),
                    tuple(DamagePhoto(int(p[0]), p[1], int(p[2])) for p in photos),
                )
            )
        return reports

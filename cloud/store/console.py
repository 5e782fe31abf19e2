"""The store's part of the operator console (SPEC §7; tables of migrations m0003 and m0004).

- Staff accounts (O-ROLE-1): operator, viewer, and technician for one car and a time window.
- The audit log: every staff action with who, when, what and the result; append-only (the
  database's triggers refuse any edit).
- Alerts (O-ALERT-1): one per cause (`key`), raised once however often the cause repeats, shown
  until acknowledged, mailed once (`alerts_to_mail`, `alert_mailed`).
- The fleet rows (O-FLEET-1): each car with its station and its last reports, in one query, and
  `status_changes`, what changed after a point of the fleet-wide order (`car_sync.status_seq`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloud.store import validate as v
from cloud.store.core import StoreCore, equal_to
from cloud.store.errors import Conflict, InvalidValue, NotFound

ROLES = ("operator", "viewer", "technician")
STAFF_COLS = "staff_id, name, role, car_id, window_start, window_end, disabled, created_at"
AUDIT_COLS = "entry_id, at, staff_id, action, target, detail, result"
ALERT_COLS = (
    "alert_id, key, kind, car_id, message, raised_at, acknowledged_at, acknowledged_by, mailed_at"
)
FLEET_COLS = (
    "c.car_id, c.name, c.station_id, st.name, st.lat, st.lon, st.radius_m, "
    "s.state, s.state_at, s.online, s.online_at, s.seen_at, s.status_seq"
)
FLEET_FROM = (
    "FROM cars c JOIN stations st ON st.station_id = c.station_id "
    "JOIN car_sync s ON s.car_id = c.car_id"
)


@dataclass(frozen=True)
class Staff:
    staff_id: str
    name: str
    role: str  # operator | viewer | technician
    car_id: str | None  # a technician's one car
    window_start: dt.datetime | None  # a technician's window
    window_end: dt.datetime | None
    disabled: bool
    created_at: dt.datetime


@dataclass(frozen=True)
class AuditEntry:
    entry_id: int
    at: dt.datetime
    staff_id: str
    action: str
    target: str
    detail: dict[str, Any]
    result: str


@dataclass(frozen=True)
class Alert:
    alert_id: int
    key: str
    kind: str
    car_id: str | None
    message: str
    raised_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    mailed_at: dt.datetime | None


@dataclass(frozen=True)
class FleetRow:
    """One car as the fleet page shows it: its station and what it last reported."""

    car_id: str
    name: str
    station_id: str
    station_name: str
    station_lat: float | None
    station_lon: float | None
    radius_m: float
    state: dict[str, Any] | None
    state_at: float | None
    online: bool | None
    online_at: float | None
    seen_at: dt.datetime | None
    status_seq: int


class ConsoleStore(StoreCore):
    """Staff, the audit log, alerts and the fleet's rows."""

    # ---- staff ------------------------------------------------------------------------------

    def add_staff(
        self,
        staff_id: str,
        *,
        name: str,
        role: str,
        car_id: str | None = None,
        window_start: dt.datetime | None = None,
        window_end: dt.datetime | None = None,
    ) -> Staff:
        staff_id = v.text(staff_id, "staff_id")
        if len(staff_id) > 64:
            raise InvalidValue("staff_id", "at most 64 characters")
        name = v.text(name, "name")
        if role not in ROLES:
            raise InvalidValue("role", f"expected one of {ROLES}, got {role!r}")
        if role == "technician":
            if car_id is None or window_start is None or window_end is None:
                raise InvalidValue(
                    "role", "a technician is granted one car and a time window: give all three"
                )
            start = v.instant(window_start, "window_start")
            end = v.instant(window_end, "window_end")
            if end <= start:
                raise InvalidValue("window_end", "the window must end after it starts")
        elif car_id is not None or window_start is not None or window_end is not None:
            raise InvalidValue("car_id", f"only a technician has a car and a window, not {role}")
        now = self._now()
        with self._tx():
            if car_id is not None:
                self._get_car(car_id)
            if self._one("SELECT 1 FROM staff WHERE staff_id = ?", (staff_id,)) is not None:
                raise Conflict("duplicate", f"staff {staff_id} exists already")
            row = self._one(
                "INSERT INTO staff (staff_id, name, role, car_id, window_start, window_end, "
                f"created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {STAFF_COLS}",
                (
                    staff_id,
                    name,
                    role,
                    car_id,
                    None if window_start is None else self._time(window_start),
                    None if window_end is None else self._time(window_end),
                    self._time(now),
                ),
            )
            return self._staff(row)

    def get_staff(self, staff_id: str) -> Staff:
        with self._tx(write=False):
            row = self._one(f"SELECT {STAFF_COLS} FROM staff WHERE staff_id = ?", (staff_id,))
        if row is None:
            raise NotFound("staff", staff_id)
        return self._staff(row)

    def list_staff(self) -> list[Staff]:
        with self._tx(write=False):
            rows = self._all(f"SELECT {STAFF_COLS} FROM staff ORDER BY staff_id")
        return [self._staff(r) for r in rows]

    def staff_password_hash(self, staff_id: str) -> str | None:
        """The hash of an enabled account's password; None for an unknown or disabled one."""
        with self._tx(write=False):
            row = self._one(
                "SELECT password_hash, disabled FROM staff WHERE staff_id = ?", (staff_id,)
            )
        return None if row is None or bool(row[1]) else row[0]

    def set_staff_password_hash(self, staff_id: str, password_hash: str) -> None:
        with self._tx():
            cur = self._execute(
                "UPDATE staff SET password_hash = ? WHERE staff_id = ?", (password_hash, staff_id)
            )
            if cur.rowcount == 0:
                raise NotFound("staff", staff_id)

    def set_staff_disabled(self, staff_id: str, disabled: bool) -> Staff:
        with self._tx():
            row = self._one(
                f"UPDATE staff SET disabled = ? WHERE staff_id = ? RETURNING {STAFF_COLS}",
                (disabled, staff_id),
            )
            if row is None:
                raise NotFound("staff", staff_id)
            return self._staff(row)

    def _staff(self, row: Any) -> Staff:
        return Staff(
            row[0], row[1], row[2], row[3], self._opt_time(row[4]), self._opt_time(row[5]),
            bool(row[6]), self._read_time(row[7]),
        )  # fmt: skip

    # ---- the audit log ----------------------------------------------------------------------

    def audit(
        self, staff_id: str, action: str, target: str, result: str, detail: dict[str, Any]
    ) -> AuditEntry:
        with self._tx():
            row = self._one(
                "INSERT INTO audit_log (at, staff_id, action, target, detail, result) "
                f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {AUDIT_COLS}",
                (self._time(self._now()), staff_id, action, target, self._json(detail), result),
            )
            return self._entry(row)

    def list_audit(
        self, *, staff_id: str | None = None, target: str | None = None, limit: int = 500
    ) -> list[AuditEntry]:
        """The newest entries first."""
        where, params = self._where(staff_id=staff_id, target=target)
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {AUDIT_COLS} FROM audit_log {where} ORDER BY entry_id DESC LIMIT ?",
                [*params, limit],
            )
        return [self._entry(r) for r in rows]

    def _entry(self, row: Any) -> AuditEntry:
        return AuditEntry(
            int(row[0]), self._read_time(row[1]), row[2], row[3], row[4],
            dict(self._read_json(row[5])), row[6],
        )  # fmt: skip

    # ---- alerts -----------------------------------------------------------------------------

    def raise_alert(self, key: str, kind: str, car_id: str | None, message: str) -> bool:
        """Raise the alert of cause `key` unless it was raised already; True if new."""
        with self._tx():
            return self._raise_alert(key, kind, car_id, message)

    def _raise_alert(self, key: str, kind: str, car_id: str | None, message: str) -> bool:
        cur = self._execute(
            "INSERT INTO alerts (key, kind, car_id, message, raised_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (key, kind, car_id, message[:1000], self._time(self._now())),
        )
        return cur.rowcount > 0

    def list_alerts(self, *, open_only: bool = True, car_id: str | None = None) -> list[Alert]:
        """The newest first; only those not acknowledged unless `open_only` is False."""
        where, params = self._where(car_id=car_id)
        if open_only:
            where += (" AND " if where else "WHERE ") + "acknowledged_at IS NULL"
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {ALERT_COLS} FROM alerts {where} ORDER BY alert_id DESC LIMIT 1000",
                params,
            )
        return [self._alert(r) for r in rows]

    def acknowledge_alert(self, alert_id: int, staff_id: str) -> Alert:
        with self._tx():
            self._execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? "
                "WHERE alert_id = ? AND acknowledged_at IS NULL",
                (self._time(self._now()), staff_id, alert_id),
            )
            row = self._one(f"SELECT {ALERT_COLS} FROM alerts WHERE alert_id = ?", (alert_id,))
        if row is None:
            raise NotFound("alert", str(alert_id))
        return self._alert(row)

    def alerts_to_mail(self, limit: int = 50) -> list[Alert]:
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {ALERT_COLS} FROM alerts WHERE mailed_at IS NULL "
                "ORDER BY alert_id LIMIT ?",
                (limit,),
            )
        return [self._alert(r) for r in rows]

    def alert_mailed(self, alert_id: int) -> bool:
        """Mark the alert mailed; False if another node marked it first (then do not send)."""
        with self._tx():
            cur = self._execute(
                "UPDATE alerts SET mailed_at = ? WHERE alert_id = ? AND mailed_at IS NULL",
                (self._time(self._now()), alert_id),
            )
            return cur.rowcount > 0

    def alert_unmailed(self, alert_id: int) -> None:
        """Give back the claim of a mail that could not be sent (the next round sends it)."""
        with self._tx():
            self._execute("UPDATE alerts SET mailed_at = NULL WHERE alert_id = ?", (alert_id,))

    def _alert(self, row: Any) -> Alert:
        return Alert(
            int(row[0]), row[1], row[2], row[3], row[4], self._read_time(row[5]),
            self._opt_time(row[6]), row[7], self._opt_time(row[8]),
        )  # fmt: skip

    # ---- penalties (O-ADM-1, C-PEN-1) -------------------------------------------------------

    def late_returns(self) -> list[tuple[str, str, str, dt.datetime]]:
        """(member, driver, reservation, its end) of every trip returned late without an
        extension (C-PEN-1's offences), the newest first."""
        with self._tx(write=False):
            rows = self._all(
                "SELECT r.member_id, r.driver_id, r.reservation_id, r.ends_at FROM trips t "
                "JOIN reservations r ON r.reservation_id = t.reservation_id "
                "WHERE t.unauthorised_extension = ? ORDER BY r.ends_at DESC LIMIT 500",
                (True,),
            )
        return [(r[0], r[1], r[2], self._read_time(r[3])) for r in rows]

    def lift_penalty(self, reservation_id: str) -> None:
        """The operator forgives a late return: it no longer counts (C-PEN-1)."""
        with self._tx():
            cur = self._execute(
                "UPDATE trips SET unauthorised_extension = ? "
                "WHERE reservation_id = ? AND unauthorised_extension = ?",
                (False, reservation_id, True),
            )
            if cur.rowcount == 0:
                raise NotFound("late return", reservation_id)

    # ---- the fleet --------------------------------------------------------------------------

    def fleet(self, *, station_id: str | None = None, car_id: str | None = None) -> list[FleetRow]:
        """Every car (or the station's, or one) with its station and last reports."""
        where, params = self._where("c.", station_id=station_id, car_id=car_id)
        with self._tx(write=False):
            rows = self._all(f"SELECT {FLEET_COLS} {FLEET_FROM} {where} ORDER BY c.car_id", params)
        return [self._fleet_row(r) for r in rows]

    def status_marks(self, since: int) -> list[tuple[str, int]]:
        """(car, its number) of the cars whose state or presence changed after `since`: the
        index alone, for the live feed's frequent look."""
        with self._tx(write=False):
            rows = self._all(
                "SELECT car_id, status_seq FROM car_sync WHERE status_seq > ? ORDER BY status_seq",
                (since,),
            )
        return [(r[0], int(r[1])) for r in rows]

    def fleet_rows(self, car_ids: Sequence[str]) -> list[FleetRow]:
        """The fleet rows of these cars, in the fleet-wide order of their last change."""
        found: list[FleetRow] = []
        for i in range(0, len(car_ids), 500):
            chunk = list(car_ids[i : i + 500])
            marks = ", ".join("?" * len(chunk))
            with self._tx(write=False):
                rows = self._all(
                    f"SELECT {FLEET_COLS} {FLEET_FROM} WHERE c.car_id IN ({marks})", chunk
                )
            found.extend(self._fleet_row(r) for r in rows)
        return sorted(found, key=lambda r: r.status_seq)

    def status_changes(self, since: int) -> list[FleetRow]:
        """The cars whose state or presence changed after `since` in the fleet-wide order."""
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {FLEET_COLS} {FLEET_FROM} WHERE s.status_seq > ? ORDER BY s.status_seq",
                (since,),
            )
        return [self._fleet_row(r) for r in rows]

    def _fleet_row(self, row: Any) -> FleetRow:
        return FleetRow(
            row[0], row[1], row[2], row[3],
            None if row[4] is None else float(row[4]), None if row[5] is None else float(row[5]),
            float(row[6]), None if row[7] is None else dict(self._read_json(row[7])),
            None if row[8] is None else float(row[8]), None if row[9] is None else bool(row[9]),
            None if row[10] is None else float(row[10]), self._opt_time(row[11]), int(row[12]),
        )  # fmt: skip

    @staticmethod
    def _where(prefix: str = "", **columns: object) -> tuple[str, Sequence[object]]:
        terms, params = equal_to(prefix, **columns)
        return ("WHERE " + " AND ".join(terms) if terms else ""), params

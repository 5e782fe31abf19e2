"""The operator console's operations, transport-free (SPEC §7): staff login, the fleet and one
car, operator commands, alerts, staff accounts; each checked against the roles of
`cloud.staff` and written to the audit log, refusals included (O-ROLE-1).

The HTTP API (`cloud.api_console`) and the pages (`cloud.web.console`) only translate; both go
through here, so a rule holds the same on either.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cloud import billing
from cloud import staff as roles
from cloud.auth import Caller, hash_password
from cloud.service import Cloud, Refused
from cloud.store import InvalidValue, NotFound
from cloud.store import records as rec
from cloud.store.console import Alert, AuditEntry, FleetRow, Staff
from cloud.store.sync import CarEvent
from protocol.geo import distance_m

# The car's trip states (firmware.machine.STATES), for the fleet page's filter
TRIP_STATES = (
    "idle",
    "unlocked",
    "in_use",
    "returning",
    "forgotten_item_window",
    "security_locked",
)
GUARD_PREFIX = "staff:"  # the login guard's keys: a staff ID never shares a driver's record
REASONS = {
    "staff_disabled": ("this staff account is disabled", "このスタッフアカウントは無効です"),
    "not_permitted": ("your role may not do this", "この操作の権限がありません"),
    "not_your_car": ("you are granted another car", "この車両の権限がありません"),
    "outside_window": (
        "this is outside the time window you were granted",
        "許可された作業時間外です",
    ),
}


@dataclass(frozen=True)
class FleetFilter:
    station_id: str | None = None
    state: str | None = None  # one of TRIP_STATES
    offline: bool = False  # only the cars not online

    def matches(self, row: dict[str, Any]) -> bool:
        return (
            (self.station_id is None or row["station_id"] == self.station_id)
            and (self.state is None or row["trip_state"] == self.state)
            and (not self.offline or not row["online"])
        )


class Console:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.store = cloud.store
        self.zone = cloud.policy.zone

    # ---- who ---------------------------------------------------------------------------------

    def login(self, staff_id: str, password: str, address: str | None = None) -> Caller:
        """A staff account for a right password (behind the same login guard as drivers)."""
        self.cloud.check_password_guarded(
            GUARD_PREFIX + staff_id, password, lambda: self.store.staff_password_hash(staff_id),
            address,
        )  # fmt: skip
        return Caller(staff_id, "staff", "")

    def staff(self, caller: Caller) -> Staff:
        """The caller's account as it is now (a disabled one is refused at once)."""
        if caller.kind != "staff":
            raise Refused(
                401,
                "not_a_staff_token",
                "log in to the console with a staff ID",
                "スタッフIDでコンソールにログインしてください",
            )
        try:
            member = self.store.get_staff(caller.account_id)
        except NotFound:
            raise Refused(401, "unknown_account", "this staff account no longer exists") from None
        if member.disabled:
            raise Refused(401, "staff_disabled", *REASONS["staff_disabled"])
        return member

    def require(
        self, caller: Caller, action: str, car_id: str | None = None, *, what: str = "",
        target: str = "",
    ) -> Staff:  # fmt: skip
        """The caller's account if its role allows `action`; else Refused 403, audited as
        `what` (default: the action) on `target` (default: the car)."""
        member = self.staff(caller)
        reason = roles.refusal(member, action, car_id, self.cloud.clock())
        if reason is not None:
            self.store.audit(
                member.staff_id, what or action, target or car_id or "", f"refused:{reason}", {}
            )
            en, ja = REASONS[reason]
            raise Refused(403, reason, en, ja)
        return member

    # ---- the fleet ---------------------------------------------------------------------------

    def fleet(self, caller: Caller, only: FleetFilter = FleetFilter()) -> list[dict[str, Any]]:
        self.require(caller, "fleet")
        if only.state is not None and only.state not in TRIP_STATES:
            raise Refused(422, "bad_filter", f"state: expected one of {TRIP_STATES}")
        return [r for r in map(self.row, self.store.fleet(station_id=only.station_id))
                if only.matches(r)]  # fmt: skip

    def row(self, r: FleetRow) -> dict[str, Any]:
        """One car as the fleet page and the API show it (O-FLEET-1)."""
        s = r.state or {}
        position = s.get("position")
        distance = None
        if isinstance(position, dict) and r.station_lat is not None and r.station_lon is not None:
            distance = distance_m(position["lat"], position["lon"], r.station_lat, r.station_lon)
        doors_open = s.get("doors_open") or {}
        return {
            "car_id": r.car_id,
            "name": r.name,
            "station_id": r.station_id,
            "station_name": r.station_name,
            "trip_state": s.get("trip_state"),
            "reservation_id": s.get("reservation_id"),
            "doors": s.get("doors"),
            "doors_open": sorted(d for d, is_open in doors_open.items() if is_open),
            "key_present": s.get("key_present"),
            "parking_brake": s.get("parking_brake"),
            "engine_running": s.get("engine_running"),
            "fuel_pct": s.get("fuel_pct"),
            "odometer_km": s.get("odometer_km"),
            "position": position,
            "distance_m": None if distance is None else round(distance),
            "in_geofence": None if distance is None else distance <= r.radius_m,
            "firmware": s.get("firmware"),
            "immobilised": s.get("operator_immobilised"),
            "service_mode": s.get("service_mode"),
            "online": bool(r.online),
            "last_contact": None if r.seen_at is None else self.local(r.seen_at),
            "seq": r.status_seq,
        }

    def local(self, t: dt.datetime) -> str:
        return t.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    # ---- one car -----------------------------------------------------------------------------

    def car(self, caller: Caller, car_id: str) -> dict[str, Any]:
        self.require(caller, "car", car_id)
        rows = self.store.fleet(car_id=car_id)
        if not rows:
            raise NotFound("car", car_id)
        return self.row(rows[0])

    def reservations(self, caller: Caller, car_id: str) -> list[rec.Reservation]:
        self.require(caller, "car", car_id)
        since = self.cloud.clock() - dt.timedelta(days=7)
        return self.store.list_reservations(car_id=car_id, ends_after=since)

    def events(self, caller: Caller, car_id: str) -> list[CarEvent]:
        self.require(caller, "events", car_id)
        self.store.get_car(car_id)
        return self.store.car_events(car_id)

    def command(
        self, caller: Caller, car_id: str, name: str, args: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send an operator command and give its one result (O-CAR-1); audited either way. A
        car that does not answer raises an alert (O-ALERT-1)."""
        if name not in roles.CONSOLE_COMMANDS:
            raise Refused(
                404, "unknown_command", f"no command {name!r}; one of {roles.CONSOLE_COMMANDS}"
            )
        member = self.require(caller, f"command:{name}", car_id)
        self.store.get_car(car_id)
        args = dict(args or {})
        try:
            result = self.cloud.car_link.send(car_id, name, args, self.cloud.command_timeout)
        except Refused as exc:
            self.store.audit(member.staff_id, f"command:{name}", car_id, exc.code, args)
            if exc.code == "car_timeout":
                self.store.raise_alert(
                    f"command_unanswered:{exc.extra.get('command_id', name)}",
                    "command_unanswered",
                    car_id,
                    f"{car_id} did not answer {name} (sent by {member.staff_id})",
                )
            raise
        outcome = ("ok:" if result.get("ok") else "refused:") + str(result.get("code"))
        self.store.audit(member.staff_id, f"command:{name}", car_id, outcome, args)
        return result

    # ---- alerts, staff, audit ----------------------------------------------------------------

    def alerts(self, caller: Caller, open_only: bool = True) -> list[Alert]:
        self.require(caller, "alerts")
        return self.store.list_alerts(open_only=open_only)

    def acknowledge_alert(self, caller: Caller, alert_id: int) -> Alert:
        member = self.require(caller, "acknowledge_alert")
        alert = self.store.acknowledge_alert(alert_id, member.staff_id)
        self.store.audit(member.staff_id, "acknowledge_alert", str(alert_id), "ok", {})
        return alert

    def list_staff(self, caller: Caller) -> list[Staff]:
        self.require(caller, "staff")
        return self.store.list_staff()

    def add_staff(
        self, caller: Caller, staff_id: str, name: str, role: str, password: str,
        car_id: str | None = None, window: tuple[dt.datetime, dt.datetime] | None = None,
    ) -> Staff:  # fmt: skip
        member = self.require(caller, "manage_staff")
        if len(password) < 8:
            raise Refused(422, "weak_password", "the password needs at least 8 characters",
                          "パスワードは8文字以上にしてください")  # fmt: skip
        detail = {"role": role, "car_id": car_id}
        try:
            with self.store.batch():
                added = self.store.add_staff(
                    staff_id, name=name, role=role, car_id=car_id,
                    window_start=window[0] if window else None,
                    window_end=window[1] if window else None,
                )  # fmt: skip
                self.store.set_staff_password_hash(added.staff_id, hash_password(password))
        except (InvalidValue, NotFound) as exc:
            self.store.audit(member.staff_id, "add_staff", staff_id, "refused:invalid", detail)
            raise Refused(422, "invalid", str(exc)) from exc
        self.store.audit(member.staff_id, "add_staff", staff_id, "ok", detail)
        return added

    def set_staff_disabled(self, caller: Caller, staff_id: str, disabled: bool) -> Staff:
        member = self.require(caller, "manage_staff")
        if staff_id == member.staff_id and disabled:
            raise Refused(409, "own_account", "you cannot disable your own account",
                          "自分のアカウントは無効にできません")  # fmt: skip
        changed = self.store.set_staff_disabled(staff_id, disabled)
        action = "disable_staff" if disabled else "enable_staff"
        self.store.audit(member.staff_id, action, staff_id, "ok", {})
        return changed

    def record_refuel(
        self, caller: Caller, reservation_id: str, *, at: dt.datetime, litres: float,
        amount_yen: int, kind: str,
    ) -> tuple[rec.Refuel, rec.Invoice | None]:  # fmt: skip
        """O-ADM-1: a refuel from the receipt left in the glovebox (kind `receipt`) or paid by
        the driver (kind `emergency`, reimbursed); the adjustment invoice it made, if any."""
        member = self.require(caller, "admin_change")
        detail = {"litres": litres, "amount_yen": amount_yen, "kind": kind}
        try:
            refuel, adjustment = billing.record_refuel(
                self.store, self.cloud.policy, reservation_id, at=at, litres=litres,
                amount_yen=amount_yen, kind=kind, by=member.staff_id,
            )  # fmt: skip
        except (InvalidValue, NotFound) as exc:
            self.store.audit(member.staff_id, "record_refuel", reservation_id, "refused", detail)
            raise Refused(422, "invalid", str(exc)) from exc
        if adjustment is not None:
            detail["adjustment_yen"] = adjustment.total
        self.store.audit(member.staff_id, "record_refuel", reservation_id, "ok", detail)
        return refuel, adjustment

    def audit_log(self, caller: Caller) -> list[AuditEntry]:
        self.require(caller, "audit")
        return self.store.list_audit()

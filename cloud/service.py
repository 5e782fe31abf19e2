"""The phone site's operations, transport-free: who may do what, the rules, then the store.

Each operation loads what the rules need from the store, asks `cloud.booking` for a decision,
and writes through the store, whose own atomic checks (C-CAR-1, C-DRV-1, C-MAX-1) catch a
racing writer. A refusal is a `Refused` carrying an HTTP-ish status, a stable code and messages
in Japanese and English; the HTTP layer only translates it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cloud import model
from cloud.auth import AuthError, Caller, check_password, hash_password
from cloud.booking import (
    check_booking,
    check_cancel,
    check_change,
    check_extension,
    may_see,
    next_extension_end,
)
from cloud.decision import Decision
from cloud.fees import reservation_fee
from cloud.login_guard import LoginGuard, TooManyAttempts
from cloud.penalties import standing
from cloud.policy import Policy
from cloud.store import LIVE_STATUSES, Conflict, InvalidValue, NotFound, Store
from cloud.store import records as rec

# Refusal codes and the status each is answered with; anything else is 422.
FORBIDDEN = {"not_a_driver", "not_permitted", "membership_revoked", "membership_suspended"}
CONFLICTS = {
    "car_buffer",
    "driver_overlap",
    "extension_conflict",
    "member_limit",
    "penalty_limit",
    "stale",
    "status",
    "fee_changed",
}
OPERATIONS = ("start", "end", "reunlock", "forgotten_unlock", "forgotten_lock", "register_card")


class Refused(Exception):
    """An operation was refused; nothing was changed."""

    def __init__(
        self, status: int, code: str, message_en: str, message_ja: str = "", **extra: Any
    ) -> None:
        super().__init__(message_en)
        self.status = status
        self.code = code
        self.message_en = message_en
        self.message_ja = message_ja or message_en
        self.extra = extra


def refused(decision: Decision) -> Refused:
    status = 403 if decision.code in FORBIDDEN else 409 if decision.code in CONFLICTS else 422
    extra: dict[str, Any] = {}
    if decision.conflict_id is not None:
        extra["conflict_id"] = decision.conflict_id
    return Refused(status, decision.code, decision.message_en, decision.message_ja, **extra)


class CarOperations(Protocol):
    """Where remote car operations go (the MQTT sync in production)."""

    def send(self, car_id: str, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Deliver a command to the car and return its result (ok, code, data)."""
        ...


@runtime_checkable
class CarSync(Protocol):
    """Told when a write concerns a car, so its snapshot goes out at once (the MQTT sync)."""

    def changed(self, car_id: str) -> None: ...


class NoCarLink:
    """No link to the cars is configured: remote operations are refused, clearly."""

    def send(self, car_id: str, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        raise Refused(
            503,
            "car_link_unavailable",
            f"car {car_id} cannot be reached: this cloud has no link to its cars",
            f"車両 {car_id} と通信できません（車両との接続が設定されていません）",
        )


@dataclass(frozen=True)
class ReservationView:
    """A reservation as the phone site shows it: the row, its fee and, on request, history."""

    reservation: rec.Reservation
    fee: int
    history: tuple[rec.ReservationChange, ...] = field(default=())


class Cloud:
    """The operations of the phone site for one store and policy, on an injected clock."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        clock: Callable[[], dt.datetime],
        cars: CarOperations | None = None,
        command_timeout: float = 10.0,
        sync: CarSync | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.car_link: CarOperations = cars or NoCarLink()
        self.command_timeout = command_timeout
        # The MQTT sync is both: `cars=sync` wires remote operations and snapshots at once.
        self.sync = sync if sync is not None else cars if isinstance(cars, CarSync) else None
        self.login_guard = LoginGuard(lambda: self.clock().timestamp())

    def _changed(self, car_id: str) -> None:
        """S-SYNC-1: the store's triggers mark the car; this only saves the sync a poll."""
        if self.sync is not None:
            self.sync.changed(car_id)

    # ---- who is asking --------------------------------------------------------------------

    def login(self, account_id: str, password: str, address: str | None = None) -> Caller:
        """The account for a right password; AuthError for a wrong one; Refused (429) when
        there were too many wrong ones lately (P-WEB-5: slowed down and reported)."""

        def stored() -> str | None:
            try:
                return self.store.password_hash(account_id)
            except (NotFound, InvalidValue):
                return None

        self.check_password_guarded(account_id, password, stored, address)
        if len(account_id) == self.policy.identity.driver_id_length:
            driver = self.store.get_driver(account_id)
            return Caller(driver.driver_id, "driver", driver.member_id, driver.is_admin)
        member = self.store.get_member(account_id)
        return Caller(member.member_id, "member", member.member_id)

    def check_password_guarded(
        self,
        guard_key: str,
        password: str,
        stored: Callable[[], str | None],
        address: str | None = None,
    ) -> None:
        """Check a password behind the login guard (the drivers' and the staff's logins):
        Refused 429 while slowed down, AuthError for a wrong password or unknown account."""
        try:
            self.login_guard.check(guard_key, address)
        except TooManyAttempts as exc:
            wait = int(exc.wait) + 1
            raise Refused(
                429,
                "too_many_attempts",
                f"too many wrong passwords; try again in {wait} s",
                f"パスワードの誤りが続いたため、{wait} 秒後に再度お試しください",
                retry_after=wait,
            ) from None
        if not check_password(password, stored()):
            self.login_guard.failed(guard_key, address)
            raise AuthError("bad_login", "unknown account or wrong password")
        self.login_guard.succeeded(guard_key, address)

    def password_must_change(self, caller: Caller) -> bool:
        return self.store.password_must_change(caller.account_id)

    def change_password(self, caller: Caller, current: str, new: str) -> None:
        """P-WEB-6: the driver's own new password, replacing the initial one or the last."""
        if not check_password(current, self.store.password_hash(caller.account_id)):
            raise Refused(
                422, "wrong_password", "the current password is wrong", "現在のパスワードが違います"
            )
        if len(new) < 8:
            raise Refused(
                422,
                "weak_password",
                "the new password needs at least 8 characters",
                "新しいパスワードは8文字以上にしてください",
            )
        if new == current:
            raise Refused(
                422,
                "same_password",
                "the new password must differ from the current one",
                "新しいパスワードは現在のものと変えてください",
            )
        self.store.set_password_hash(caller.account_id, hash_password(new), must_change=False)

    def _actor(self, caller: Caller) -> model.Actor:
        try:
            if caller.kind == "driver":
                return model.driver_from(self.store.get_driver(caller.account_id))
            member = self.store.get_member(caller.account_id)
        except NotFound:
            raise Refused(401, "unknown_account", "this account no longer exists") from None
        return model.member_from(member)

    def _member(self, member_id: str) -> model.Member:
        row = self.store.get_member(member_id)
        if row.status == "suspended":
            raise Refused(
                403,
                "membership_suspended",
                f"membership {member_id} is suspended",
                f"会員 {member_id} は利用停止中です",
            )
        return model.member_from(row, self.store.unauthorised_extensions(member_id))

    # ---- reading --------------------------------------------------------------------------

    def cars(self) -> list[tuple[rec.Car, rec.Station]]:
        stations = {s.station_id: s for s in self.store.list_stations()}
        return [(c, stations[c.station_id]) for c in self.store.list_cars()]

    def reservations(self, caller: Caller, when: str = "all") -> list[ReservationView]:
        """The caller's reservations under the guide's visibility rules: a member and an admin
        driver see all of the member's drivers; any other driver only their own."""
        if when not in ("upcoming", "past", "all"):
            raise Refused(422, "bad_filter", f"when: expected upcoming, past or all, got {when!r}")
        actor = self._actor(caller)
        now = self.clock()
        rows = self.store.list_reservations(member_id=caller.member_id)
        views = []
        for row in rows:
            if not may_see(actor, model.reservation_from(row)):
                continue
            upcoming = row.status in LIVE_STATUSES and (row.status == "in_use" or row.end > now)
            if when == "all" or (when == "upcoming") == upcoming:
                views.append(self._view(row))
        return views

    def reservation(self, caller: Caller, reservation_id: str) -> ReservationView:
        row = self._visible(caller, reservation_id)
        return self._view(row, history=True)

    def _visible(self, caller: Caller, reservation_id: str) -> rec.Reservation:
        try:
            row = self.store.get_reservation(reservation_id)
        except (NotFound, InvalidValue):
            row = None
        if row is None or not may_see(self._actor(caller), model.reservation_from(row)):
            # The same answer whether it does not exist or is someone else's.
            raise Refused(
                404,
                "not_found",
                f"no reservation {reservation_id} of yours",
                f"予約 {reservation_id} は見つかりません",
            )
        return row

    def _view(self, row: rec.Reservation, history: bool = False) -> ReservationView:
        car = self.store.get_car(row.car_id)
        fee = reservation_fee(self.policy.for_kind(car.kind), row.start, row.end).yen
        changes = tuple(self.store.reservation_history(row.reservation_id)) if history else ()
        return ReservationView(row, fee, changes)

    def invoices(self, caller: Caller) -> list[rec.Invoice]:
        actor = self._actor(caller)
        mine = []
        for inv in self.store.list_invoices(caller.member_id):
            if inv.reservation_id is not None:
                row = self.store.get_reservation(inv.reservation_id)
                if not may_see(actor, model.reservation_from(row)):
                    continue
            elif isinstance(actor, model.Driver) and not actor.admin:
                continue
            mine.append(inv)
        return mine

    # ---- booking --------------------------------------------------------------------------

    def _existing(self, *, car_id: str, driver_id: str, member_id: str) -> list[model.Reservation]:
        """Live reservations the rules may need: the car's, the driver's and the member's."""
        now = self.clock()
        seen: dict[str, rec.Reservation] = {}
        rows = [
            *self.store.list_reservations(car_id=car_id, statuses=LIVE_STATUSES),
            *self.store.list_reservations(driver_id=driver_id, statuses=LIVE_STATUSES),
            *self.store.list_reservations(member_id=member_id, statuses=LIVE_STATUSES),
        ]
        for row in rows:
            if row.status == "in_use" or row.end > now:
                seen[row.reservation_id] = row
        return [model.reservation_from(r) for r in seen.values()]

    def _open_limit(self, member: model.Member, start: dt.datetime) -> int | None:
        now = self.clock()
        days = (now.astimezone(self.policy.zone).date(), start.astimezone(self.policy.zone).date())
        limits = [self.policy.booking.max_open_per_member]
        penalty = standing(self.policy, member, now).limit_for(days)
        if penalty is not None:
            limits.append(penalty.max_open)
        present = [n for n in limits if n is not None]
        return min(present) if present else None

    def _buffer_minutes(self, car: rec.Car) -> int:
        """The car buffer of C-CAR-1 for this car's kind, as the store writes it."""
        return int(self.policy.for_kind(car.kind).booking.car_buffer.total_seconds() // 60)

    def _booking_parts(
        self, caller: Caller, car_id: str, driver_id: str | None
    ) -> tuple[model.Actor, model.Driver, model.Member, rec.Car]:
        actor = self._actor(caller)
        driver_id = driver_id or caller.account_id
        try:
            car = self.store.get_car(car_id)
        except (NotFound, InvalidValue):
            raise Refused(404, "unknown_car", f"car_id: no car {car_id!r}") from None
        try:
            driver_row = self.store.get_driver(driver_id)
        except (NotFound, InvalidValue):
            if caller.kind == "member" and driver_id == caller.account_id:
                # SPEC C-DRV-1: a member ID cannot reserve; the rules say so in their words.
                driver_row = None
            else:
                raise Refused(
                    404, "unknown_driver", f"driver_id: no driver {driver_id!r}"
                ) from None
        if driver_row is None:
            member = self._member(caller.member_id)
            driver = model.Driver(caller.account_id, caller.member_id, None)
        else:
            member = self._member(driver_row.member_id)
            driver = model.driver_from(driver_row)
        return actor, driver, member, car

    def quote(
        self,
        caller: Caller,
        car_id: str,
        start: dt.datetime,
        end: dt.datetime,
        driver_id: str | None = None,
    ) -> Decision:
        """What `reserve` would answer, without reserving."""
        actor, driver, member, car = self._booking_parts(caller, car_id, driver_id)
        request = model.BookingRequest(actor, driver, member, model.car_from(car), start, end)
        existing = self._existing(car_id=car.car_id, driver_id=driver.id, member_id=member.id)
        return check_booking(self.policy, request, existing, self.clock())

    def reserve(
        self,
        caller: Caller,
        car_id: str,
        start: dt.datetime,
        end: dt.datetime,
        driver_id: str | None = None,
    ) -> ReservationView:
        decision = self.quote(caller, car_id, start, end, driver_id)
        if not decision.ok:
            raise refused(decision)
        _, driver, member, car = self._booking_parts(caller, car_id, driver_id)
        with _conflicts():
            row = self.store.create_reservation(
                car_id=car.car_id,
                driver_id=driver.id,
                start=start,
                end=end,
                buffer_minutes=self._buffer_minutes(car),
                member_open_limit=self._open_limit(member, start),
            )
        self._changed(row.car_id)
        return self._view(row)

    def change(
        self, caller: Caller, reservation_id: str, start: dt.datetime, end: dt.datetime
    ) -> ReservationView:
        row = self._visible(caller, reservation_id)
        actor, driver, member, car = self._booking_parts(caller, row.car_id, row.driver_id)
        request = model.ChangeRequest(
            actor,
            model.reservation_from(row),
            driver,
            member,
            model.car_from(car),
            start,
            end,
        )
        existing = self._existing(car_id=car.car_id, driver_id=driver.id, member_id=member.id)
        decision = check_change(self.policy, request, existing, self.clock())
        if not decision.ok:
            raise refused(decision)
        with _conflicts():
            changed = self.store.change_reservation(
                reservation_id,
                start=start,
                end=end,
                buffer_minutes=self._buffer_minutes(car),
                expected_version=row.version,
            )
        self._changed(changed.car_id)
        return self._view(changed)

    def cancellation(self, caller: Caller, reservation_id: str) -> Decision:
        """What cancelling would cost now (shown before the driver confirms)."""
        row = self._visible(caller, reservation_id)
        car = self.store.get_car(row.car_id)
        request = model.CancelRequest(
            self._actor(caller), model.reservation_from(row), model.car_from(car)
        )
        return check_cancel(self.policy, request, self.clock())

    def cancel(self, caller: Caller, reservation_id: str, accepted_fee: int) -> ReservationView:
        """Cancel, if the fee is still the one the driver accepted (C-CAN-1, F-CAN-1)."""
        decision = self.cancellation(caller, reservation_id)
        if not decision.ok:
            raise refused(decision)
        assert decision.fee is not None
        if decision.fee != accepted_fee:
            raise Refused(
                409,
                "fee_changed",
                f"the cancellation fee is now ¥{decision.fee:,}, not ¥{accepted_fee:,}; "
                "confirm the new fee",
                f"キャンセル料は現在 {decision.fee:,}円です。確認してください",
                fee=decision.fee,
            )
        row = self._visible(caller, reservation_id)
        with _conflicts():
            cancelled = self.store.cancel_reservation(
                reservation_id, fee=decision.fee, expected_version=row.version
            )
        self._changed(cancelled.car_id)
        return self._view(cancelled)

    def extend(
        self, caller: Caller, reservation_id: str, end: dt.datetime | None = None
    ) -> ReservationView:
        """Extend a running trip: by one step (+15 minutes) or to `end` (C-EXT-1)."""
        row = self._visible(caller, reservation_id)
        actor, driver, member, car = self._booking_parts(caller, row.car_id, row.driver_id)
        reservation = model.reservation_from(self._with_trip(row))
        target = end or next_extension_end(self.policy, model.car_from(car), reservation)
        request = model.ExtensionRequest(actor, reservation, driver, model.car_from(car), target)
        existing = self._existing(car_id=car.car_id, driver_id=driver.id, member_id=member.id)
        decision = check_extension(self.policy, request, existing, self.clock())
        if not decision.ok:
            raise refused(decision)
        with _conflicts():
            extended = self.store.extend_reservation(
                reservation_id,
                end=target,
                buffer_minutes=self._buffer_minutes(car),
                expected_version=row.version,
            )
        self._changed(extended.car_id)
        return self._view(extended)

    def _with_trip(self, row: rec.Reservation) -> rec.Reservation:
        if row.started_at is not None or row.status != "in_use":
            return row
        trip = self.store.get_trip(row.reservation_id)
        return dataclasses.replace(row, started_at=trip.started_at, returned_at=trip.ended_at)

    # ---- remote car operations ------------------------------------------------------------

    def operate(
        self, caller: Caller, reservation_id: str, name: str, args: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A remote operation on the reservation's car (SPEC U-START-5, U-SEC-4, U-END-2,
        U-FGT-1/2, U-CARD-1): only the reservation's own driver or an admin of its member, only
        while it is live (or in its forgotten-item window, which the car judges)."""
        if name not in OPERATIONS:
            raise Refused(
                404, "unknown_operation", f"no operation {name!r}; expected one of {OPERATIONS}"
            )
        row = self._visible(caller, reservation_id)
        actor = self._actor(caller)
        if isinstance(actor, model.Member):
            raise refused_not_a_driver()
        if row.status == "cancelled":
            raise Refused(
                409, "status", f"reservation {reservation_id} is cancelled", "予約は取消済みです"
            )
        command = {"reservation_id": reservation_id, **(args or {})}
        return self.car_link.send(row.car_id, name, command, self.command_timeout)


def refused_not_a_driver() -> Refused:
    return Refused(
        403,
        "not_a_driver",
        "a member ID cannot operate a car; log in with a driver ID",
        "会員IDでは車両を操作できません。運転者IDでログインしてください",
    )


@contextlib.contextmanager
def _conflicts() -> Iterator[None]:
    """Turns a store refusal (a racing writer got there first) into a refusal of ours."""
    try:
        yield
    except Conflict as exc:
        raise Refused(409, exc.reason, str(exc)) from exc
    except InvalidValue as exc:
        raise Refused(422, "invalid", str(exc), field=exc.field) from exc

"""The booking rules (SPEC §2 C-*): reserve, change, cancel, extend — pure functions from the
policy, the reservations that matter, the request and the current time to a `Decision`.

`existing` may be any superset of what the rules look at: the car's reservations around the
requested time (C-CAR-1), the driver's (C-DRV-1) and the member's open ones (C-MAX-1). Each check
filters by car, driver, member and status itself; cancelled reservations never count, and the
reservation being changed or extended is left out of its own checks. The first rule that fails
decides; the order is who asks, then the times, then the other reservations.

Each function takes the root policy and applies the car's kind (`Policy.for_kind`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from cloud.decision import (
    Decision,
    allow,
    deadline_en,
    deadline_ja,
    duration_en,
    duration_ja,
    refuse,
)
from cloud.fees import cancellation_fee, reservation_fee
from cloud.model import (
    ACTIVE,
    Actor,
    BookingRequest,
    CancelRequest,
    Car,
    ChangeRequest,
    Driver,
    ExtensionRequest,
    Member,
    Reservation,
    Status,
    aware,
    utc,
)
from cloud.penalties import standing
from cloud.policy import DAY, Policy

# --- who may do what (C-DRV-1; guide §2) ----------------------------------------------------


def is_driver_id(policy: Policy, actor: Actor) -> bool:
    """C-DRV-1: only a driver, logged in with a driver ID, reserves and uses cars."""
    return isinstance(actor, Driver) and len(actor.id) == policy.identity.driver_id_length


def may_act(actor: Actor, driver_id: str, member_id: str) -> bool:
    """Whether `actor` may reserve, change, cancel or extend for `driver_id` of `member_id`: the
    driver themself, or an admin driver of the same member. A member ID never may."""
    if not isinstance(actor, Driver):
        return False
    return actor.id == driver_id or (actor.admin and actor.member_id == member_id)


def may_see(actor: Actor, reservation: Reservation) -> bool:
    """The guide's visibility (§2 *1, *2): the member ID and an admin driver see all the
    member's reservations; any other driver sees only their own."""
    if isinstance(actor, Member):
        return actor.id == reservation.member_id
    return actor.id == reservation.driver_id or (
        actor.admin and actor.member_id == reservation.member_id
    )


def _who(policy: Policy, actor: Actor, driver_id: str, member_id: str) -> Decision | None:
    if not is_driver_id(policy, actor):
        return refuse("not_a_driver")
    if not may_act(actor, driver_id, member_id):
        return refuse("not_permitted")
    return None


# --- times (C-GRID-1, C-HOR-1, C-LIC-1) --------------------------------------------------------


def on_grid(policy: Policy, t: dt.datetime) -> bool:
    """C-GRID-1: `t` falls on a grid mark of the local day (15-minute marks: :00, :15, …)."""
    local = t.astimezone(policy.zone)
    if local.microsecond:
        return False
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    return seconds % int(policy.booking.grid.total_seconds()) == 0


def _floor_to_grid(policy: Policy, t: dt.datetime) -> dt.datetime:
    local = t.astimezone(policy.zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((local - midnight) // policy.booking.grid) * policy.booking.grid


def licence_end(driver: Driver, policy: Policy) -> dt.datetime | None:
    """C-LIC-1: the latest instant a reservation may end: the end of the licence's last valid
    local day (None: no licence on file)."""
    if driver.licence_expiry is None:
        return None
    return dt.datetime.combine(driver.licence_expiry + DAY, dt.time(), tzinfo=policy.zone)


def _licence(policy: Policy, driver: Driver, end: dt.datetime) -> Decision | None:
    if not policy.booking.check_licence:
        return None
    limit = licence_end(driver, policy)
    if limit is None or end > limit:
        expiry = driver.licence_expiry.isoformat() if driver.licence_expiry else "—"
        return refuse("licence_expired", expiry=expiry)
    return None


def _times(
    policy: Policy, driver: Driver, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> Decision | None:
    b = policy.booking
    if not (on_grid(policy, start) and on_grid(policy, end)):
        return refuse("grid", grid_ja=duration_ja(b.grid), grid_en=duration_en(b.grid))
    length = utc(end) - utc(start)
    if length < b.min_length:
        return refuse(
            "too_short", min_ja=duration_ja(b.min_length), min_en=duration_en(b.min_length)
        )
    if length > b.max_length:
        return refuse(
            "too_long", max_ja=duration_ja(b.max_length), max_en=duration_en(b.max_length)
        )
    earliest = _floor_to_grid(policy, now) if b.allow_current_unit else now
    if start < earliest:
        return refuse("start_in_past")
    h = b.horizon
    measured = start if h.measure == "start" else end - dt.timedelta(microseconds=1)
    last = h.last_open_date(now, policy.zone)
    if measured.astimezone(policy.zone).date() > last:
        return refuse("beyond_horizon", last=last.isoformat())
    return _licence(policy, driver, end)


# --- other reservations (C-MAX-1, C-DRV-1, C-CAR-1, C-PEN-1) -----------------------------------


def occupied(r: Reservation, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The time a reservation keeps its car and driver busy: its reserved time; while the trip
    runs late, until now; once returned, until the return. None when cancelled."""
    match r.status:
        case Status.RESERVED:
            return r.start, r.end
        case Status.IN_USE:
            return r.start, max(r.end, now)
        case Status.COMPLETED:
            return r.start, r.returned_at if r.returned_at is not None else r.end
    return None


def _driver_overlap(
    policy: Policy,
    driver: Driver,
    start: dt.datetime,
    end: dt.datetime,
    existing: Iterable[Reservation],
    now: dt.datetime,
    skip: str | None,
) -> Decision | None:
    if not policy.booking.driver_exclusive:
        return None
    for r in existing:
        if r.driver_id != driver.id or r.id == skip or r.status not in ACTIVE:
            continue
        busy = occupied(r, now)
        if busy is not None and start < busy[1] and end > busy[0]:
            return refuse("driver_overlap", conflict_id=r.id)
    return None


def car_conflict(
    policy: Policy,
    car: Car,
    start: dt.datetime,
    end: dt.datetime,
    existing: Iterable[Reservation],
    now: dt.datetime,
    skip: str | None = None,
) -> Reservation | None:
    """C-CAR-1: the first reservation of `car` within `booking.car_buffer` of start..end: no
    other reservation may fall between the buffer before its start and the buffer after its
    end (touching the buffer's edge is fine)."""
    buffer = policy.for_kind(car.kind).booking.car_buffer
    for r in existing:
        if r.car_id != car.id or r.id == skip:
            continue
        busy = occupied(r, now)
        if busy is None:
            continue
        if utc(start) < utc(busy[1]) + buffer and utc(end) > utc(busy[0]) - buffer:
            return r
    return None


def _car(
    policy: Policy,
    car: Car,
    start: dt.datetime,
    end: dt.datetime,
    existing: Iterable[Reservation],
    now: dt.datetime,
    skip: str | None,
    code: str,
) -> Decision | None:
    r = car_conflict(policy, car, start, end, existing, now, skip)
    if r is None:
        return None
    b = policy.booking.car_buffer
    return refuse(code, conflict_id=r.id, buffer_ja=duration_ja(b), buffer_en=duration_en(b))


def _member_limit(
    policy: Policy,
    member: Member,
    start: dt.datetime,
    existing: Iterable[Reservation],
    now: dt.datetime,
) -> Decision | None:
    count = sum(1 for r in existing if r.member_id == member.id and r.status in ACTIVE)
    days = (now.astimezone(policy.zone).date(), start.astimezone(policy.zone).date())
    penalty = standing(policy, member, now).limit_for(days)
    if penalty is not None and count >= penalty.max_open:
        until = (penalty.until - DAY).isoformat()
        return refuse("penalty_limit", limit=penalty.max_open, until=until)
    limit = policy.booking.max_open_per_member
    if limit is not None and count >= limit:
        return refuse("member_limit", limit=limit)
    return None


# --- the operations ----------------------------------------------------------------------------


def check_booking(
    policy: Policy, request: BookingRequest, existing: Iterable[Reservation], now: dt.datetime
) -> Decision:
    """A new reservation: C-DRV-1 (who), C-PEN-1 (revoked), C-GRID-1, C-HOR-1, C-LIC-1,
    C-MAX-1 and C-PEN-1 (limits), C-DRV-1 (overlap), C-CAR-1. On success `fee` is the time fee
    (F-TIME-1)."""
    aware(now, "now")
    p = policy.for_kind(request.car.kind)
    existing = tuple(existing)
    driver, member = request.driver, request.member
    failed = (
        _who(p, request.actor, driver.id, member.id)
        or _revoked(p, member, now)
        or _times(p, driver, request.start, request.end, now)
        or _member_limit(p, member, request.start, existing, now)
        or _driver_overlap(p, driver, request.start, request.end, existing, now, None)
        or _car(p, request.car, request.start, request.end, existing, now, None, "car_buffer")
    )
    return failed or allow("reserve", reservation_fee(p, request.start, request.end).yen)


def _revoked(policy: Policy, member: Member, now: dt.datetime) -> Decision | None:
    return refuse("membership_revoked") if standing(policy, member, now).revoked else None


def check_change(
    policy: Policy, request: ChangeRequest, existing: Iterable[Reservation], now: dt.datetime
) -> Decision:
    """New times for a reservation (C-CHG-1): only while it is reserved, at most
    `change.max_changes` times, until `change.deadline` before its current start; the new times
    obey the booking rules, the reservation itself left out. `fee`: the new time fee."""
    aware(now, "now")
    p = policy.for_kind(request.car.kind)
    r = request.reservation
    existing = tuple(existing)
    failed = _who(p, request.actor, r.driver_id, r.member_id) or _revoked(p, request.member, now)
    if failed:
        return failed
    if r.status is not Status.RESERVED:
        return refuse("not_changeable")
    limit = p.change.max_changes
    if limit is not None and r.changes >= limit:
        return refuse("change_limit", limit=limit)
    if not p.change.deadline.met(r.start, now, p.zone):
        d = p.change.deadline
        return refuse("change_deadline", deadline_ja=deadline_ja(d), deadline_en=deadline_en(d))
    if request.start == r.start and request.end == r.end:
        return refuse("unchanged")
    start, end = request.start, request.end
    failed = (
        _times(p, request.driver, start, end, now)
        or _driver_overlap(p, request.driver, start, end, existing, now, r.id)
        or _car(p, request.car, start, end, existing, now, r.id, "car_buffer")
    )
    return failed or allow("change", reservation_fee(p, start, end).yen)


def check_cancel(policy: Policy, request: CancelRequest, now: dt.datetime) -> Decision:
    """Cancelling (C-CAN-1, F-CAN-1): only a reservation not yet started; `fee` is what it costs
    now, shown before the driver confirms. Refused (cancel_deadline) when no tier applies."""
    aware(now, "now")
    p = policy.for_kind(request.car.kind)
    r = request.reservation
    failed = _who(p, request.actor, r.driver_id, r.member_id)
    if failed:
        return failed
    if r.status is not Status.RESERVED:
        return refuse("not_cancellable")
    fee = cancellation_fee(p, r, now)
    if fee is None:
        last = next((t.deadline for t in reversed(p.cancel.tiers) if t.deadline), None)
        ja = deadline_ja(last) if last else ""
        en = deadline_en(last) if last else ""
        return refuse("cancel_deadline", deadline_ja=ja, deadline_en=en)
    return allow("cancel", fee)


def next_extension_end(policy: Policy, car: Car, reservation: Reservation) -> dt.datetime:
    """The end the "+15 minutes" button asks for: the current end plus `extension.step`."""
    return utc(reservation.end) + policy.for_kind(car.kind).extension.step


def check_extension(
    policy: Policy, request: ExtensionRequest, existing: Iterable[Reservation], now: dt.datetime
) -> Decision:
    """Extending a running trip (C-EXT-1): during the trip and before its end time has passed,
    at most `extension.max_extensions` times, to a later grid mark, never shorter, within the
    maximum length and the licence, and only if the car's next reservation keeps its buffer
    (extension_conflict). `fee`: the time fee of the whole extended reservation."""
    aware(now, "now")
    p = policy.for_kind(request.car.kind)
    r = request.reservation
    existing = tuple(existing)
    failed = _who(p, request.actor, r.driver_id, r.member_id)
    if failed:
        return failed
    if r.status is not Status.IN_USE or r.started_at is None:
        return refuse("not_in_use")
    if now > r.end:
        return refuse("end_passed")
    if r.extensions >= p.extension.max_extensions:
        return refuse("extension_limit", limit=p.extension.max_extensions)
    end = request.end
    if end <= r.end:
        return refuse("not_longer")
    b = p.booking
    if not on_grid(p, end):
        return refuse("grid", grid_ja=duration_ja(b.grid), grid_en=duration_en(b.grid))
    if utc(end) - utc(r.start) > b.max_length:
        return refuse(
            "too_long", max_ja=duration_ja(b.max_length), max_en=duration_en(b.max_length)
        )
    failed = (
        _licence(p, request.driver, end)
        or _driver_overlap(p, request.driver, r.start, end, existing, now, r.id)
        or _car(p, request.car, r.start, end, existing, now, r.id, "extension_conflict")
    )
    return failed or allow("extend", reservation_fee(p, r.start, end).yen)

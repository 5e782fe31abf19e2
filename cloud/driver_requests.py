"""The drivers' pages' other operations (SPEC P-WEB-2, -3, -6, -7), transport-free, over the
same service and authorisation as the API (`cloud.service.Cloud`):

- a day's free and taken slots of every car, on the booking grid (P-WEB-2), and the next start
  a refused booking could have;
- a trip's invoice and the penalties in force (P-WEB-3, C-PEN-1);
- the account: details, a new e-mail address, applications for the rest, and the operator's
  decision on them (P-WEB-6);
- damage reports with photos, checked by their magic bytes (P-WEB-7).

Mails for applications and their decisions are not sent: the notifications outbox only takes
the kinds its schema's CHECK lists (migration m0002), so a new kind needs a migration.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cloud import model
from cloud.auth import Caller
from cloud.booking import may_see
from cloud.penalties import Limit, standing
from cloud.service import Cloud, Refused, refused_not_a_driver
from cloud.store import LIVE_STATUSES, Conflict, InvalidValue, NotFound
from cloud.store import records as rec
from cloud.store.driver_pages import (
    APPLICATION_FIELDS,
    DAMAGE_KINDS,
    ChangeApplication,
    DamageReport,
)

MAX_PHOTO_BYTES = 5 * 1024 * 1024  # one photo
MAX_PHOTOS = 4  # per report
DIRECT_CHANGES = ("password", "email")  # what the guide lets a driver change themselves

# a slot's state on the day grid
FREE, TAKEN, BUFFER, PAST = "free", "taken", "buffer", "past"


@dataclass(frozen=True)
class CarDay:
    car: rec.Car
    station: rec.Station
    slots: tuple[tuple[dt.datetime, str], ...]  # each grid mark of the day and its state


@dataclass(frozen=True)
class Penalties:
    revoked: bool
    offences_in_window: int
    limits: tuple[Limit, ...]  # in force now or coming


def image_type(data: bytes) -> str | None:
    """The content type of a JPEG, PNG or WebP by its first bytes (never by its name)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _invalid(exc: InvalidValue) -> Refused:
    return Refused(422, "invalid", str(exc), f"入力が正しくありません: {exc}", field=exc.field)


class DriverRequests:
    """The pages' operations beyond `Cloud`'s, for one cloud."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.store = cloud.store
        self.policy = cloud.policy

    def _driver(self, caller: Caller) -> rec.Driver:
        if caller.kind != "driver":
            raise refused_not_a_driver()
        return self.store.get_driver(caller.account_id)

    # ---- booking: the day grid (P-WEB-2) -------------------------------------------------

    def day(self, day: dt.date) -> list[CarDay]:
        """Every car with the states of the day's grid marks: taken by a reservation, kept
        free as its buffer (C-CAR-1), past, or free. No driver's identity is shown."""
        zone = self.policy.zone
        now = self.cloud.clock()
        begin = dt.datetime.combine(day, dt.time(0), zone)
        end = begin + dt.timedelta(days=1)
        out = []
        for car, station in self.cloud.cars():
            p = self.policy.for_kind(car.kind)
            grid, buffer = p.booking.grid, p.booking.car_buffer
            rows = self.store.list_reservations(
                car_id=car.car_id,
                statuses=LIVE_STATUSES,
                ends_after=begin - buffer,
                starts_before=end + buffer,
            )
            slots = []
            at = begin
            while at < end:
                after = at + grid
                state = FREE
                for r in rows:
                    if r.start < after and at < r.end:
                        state = TAKEN
                        break
                    if r.start - buffer < after and at < r.end + buffer:
                        state = BUFFER
                if state == FREE and at < now:
                    state = PAST
                slots.append((at, state))
                at = after
            out.append(CarDay(car, station, tuple(slots)))
        return out

    def next_free_start(
        self, car_id: str, start: dt.datetime, end: dt.datetime, ignore: str | None = None
    ) -> dt.datetime | None:
        """The earliest start at or after `start` when the car is free for as long (C-CAR-1),
        within the booking horizon's reach of a week; None when there is none."""
        try:
            car = self.store.get_car(car_id)
        except (NotFound, InvalidValue):
            return None
        buffer = self.policy.for_kind(car.kind).booking.car_buffer
        length = end - start
        rows = [
            r
            for r in self.store.list_reservations(
                car_id=car_id, statuses=LIVE_STATUSES, ends_after=start - buffer
            )
            if r.reservation_id != ignore
        ]
        candidates = sorted({start, *(r.end + buffer for r in rows if r.end + buffer > start)})
        for s in candidates:
            if s - start > dt.timedelta(days=7):
                break
            e = s + length
            if all(not (r.start - buffer < e and s < r.end + buffer) for r in rows):
                return s
        return None

    # ---- trips, invoices, penalties (P-WEB-3) --------------------------------------------

    def invoice_of(self, caller: Caller, reservation_id: str) -> rec.Invoice | None:
        """The reservation's invoice, if the caller may see the reservation and it has one."""
        self.cloud.reservation(caller, reservation_id)  # 404 when not the caller's
        for inv in self.store.list_invoices(caller.member_id):
            if inv.reservation_id == reservation_id:
                return inv
        return None

    def penalties(self, caller: Caller) -> Penalties:
        """C-PEN-1: the member's standing now, with the limits not yet over."""
        member = self.store.get_member(caller.member_id)
        m = model.member_from(member, self.store.unauthorised_extensions(member.member_id))
        now = self.cloud.clock()
        s = standing(self.policy, m, now)
        today = now.astimezone(self.policy.zone).date()
        current = tuple(lim for lim in s.limits if lim.until > today)
        return Penalties(s.revoked or member.status == "revoked", s.offences_in_window, current)

    # ---- account (P-WEB-6) ---------------------------------------------------------------

    def account(
        self,
        caller: Caller,
    ) -> tuple[rec.Member, rec.Driver | None, list[rec.Card]]:
        member = self.store.get_member(caller.member_id)
        if caller.kind != "driver":
            return member, None, []
        driver = self.store.get_driver(caller.account_id)
        return member, driver, self.store.list_cards(driver_id=driver.driver_id, active_only=True)

    def change_email(self, caller: Caller, email: str) -> rec.Driver:
        driver = self._driver(caller)
        try:
            return self.store.update_driver(driver.driver_id, email=email)
        except InvalidValue:
            raise Refused(
                422,
                "bad_email",
                f"not an e-mail address: {email!r}",
                f"メールアドレスの形式が正しくありません: {email}",
            ) from None

    def apply_for_change(
        self,
        caller: Caller,
        fields: dict[str, str],
        note: str = "",
    ) -> ChangeApplication:
        """An application for details the driver cannot change themselves; the operator
        decides it on the console."""
        driver = self._driver(caller)
        given = {k: v.strip() for k, v in fields.items() if k in APPLICATION_FIELDS and v.strip()}
        if not given:
            raise Refused(
                422,
                "nothing_to_change",
                "enter at least one new detail",
                "変更する項目を1つ以上入力してください",
            )
        try:
            return self.store.add_change_application(driver.driver_id, given, note)
        except InvalidValue as exc:
            raise _invalid(exc) from None

    def my_applications(self, caller: Caller) -> list[ChangeApplication]:
        if caller.kind != "driver":
            return []
        return self.store.list_change_applications(driver_id=caller.account_id)

    def list_change_applications(self, status: str | None = "pending") -> list[ChangeApplication]:
        """For the console: the applications of a status (None: all), oldest first."""
        try:
            return self.store.list_change_applications(status)
        except InvalidValue as exc:
            raise _invalid(exc) from None

    def decide_change_application(
        self, application_id: int, approve: bool, by: str, reason: str = ""
    ) -> ChangeApplication:
        """For the console: approve (applying what the drivers table holds) or reject."""
        try:
            return self.store.decide_change_application(application_id, approve, by, reason)
        except NotFound:
            raise Refused(404, "not_found", f"no change application {application_id}") from None
        except Conflict as exc:
            raise Refused(409, "status", str(exc), "この申請はすでに処理されています") from None
        except InvalidValue as exc:
            raise _invalid(exc) from None

    # ---- damage reports (P-WEB-7) --------------------------------------------------------

    def report_damage(
        self,
        caller: Caller,
        reservation_id: str,
        kind: str,
        note: str,
        photos: list[bytes],
    ) -> DamageReport:
        """Damage, dirt or a flat tyre found before driving, with photos (JPEG, PNG or WebP by
        their bytes, each at most MAX_PHOTO_BYTES): kept with the reservation."""
        view = self.cloud.reservation(caller, reservation_id)  # 404 when not the caller's
        driver = self._driver(caller)
        row = view.reservation
        if row.status not in LIVE_STATUSES:
            raise Refused(
                409,
                "status",
                "a report is made before or during the trip",
                "報告は利用前または利用中に行ってください",
            )
        if kind not in DAMAGE_KINDS:
            raise Refused(422, "bad_kind", f"kind: expected one of {DAMAGE_KINDS}")
        photos = [p for p in photos if p]
        if len(photos) > MAX_PHOTOS:
            raise Refused(
                422,
                "too_many_photos",
                f"at most {MAX_PHOTOS} photos per report",
                f"写真は1回の報告につき{MAX_PHOTOS}枚までです",
            )
        typed = []
        for data in photos:
            if len(data) > MAX_PHOTO_BYTES:
                mb = MAX_PHOTO_BYTES // (1024 * 1024)
                raise Refused(
                    413,
                    "photo_too_large",
                    f"a photo may be at most {mb} MB",
                    f"写真は1枚{mb}MBまでです",
                )
            content_type = image_type(data)
            if content_type is None:
                raise Refused(
                    415,
                    "not_an_image",
                    "only photos (JPEG, PNG or WebP) can be attached",
                    "添付できるのは写真（JPEG・PNG・WebP）のみです",
                )
            typed.append((content_type, data))
        if not note.strip() and not typed:
            raise Refused(
                422,
                "empty_report",
                "describe what you found or attach a photo",
                "内容を入力するか写真を添付してください",
            )
        return self.store.add_damage_report(
            reservation_id, driver_id=driver.driver_id, kind=kind, note=note, photos=typed
        )

    def damage_reports(self, caller: Caller, reservation_id: str) -> list[DamageReport]:
        self.cloud.reservation(caller, reservation_id)
        return self.store.list_damage_reports(reservation_id=reservation_id)

    def damage_photo(self, caller: Caller, photo_id: int) -> tuple[str, bytes]:
        try:
            report_id, content_type, data = self.store.damage_photo(photo_id)
        except (NotFound, InvalidValue):
            raise Refused(404, "not_found", f"no photo {photo_id}") from None
        report = next(
            (r for r in self.store.list_damage_reports() if r.report_id == report_id), None
        )
        actor = self.cloud._actor(caller)
        if report is None or not may_see(
            actor, model.reservation_from(self.store.get_reservation(report.reservation_id))
        ):
            raise Refused(404, "not_found", f"no photo {photo_id}")
        return content_type, data

"""Penalties for unauthorised extensions (SPEC C-PEN-1) under the car-sharing guide's policy."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from cloud.booking import check_booking, check_change
from cloud.model import BookingRequest, Car, ChangeRequest, Driver, Member, Reservation, Status
from cloud.penalties import Limit, standing, unauthorised_extension_at
from cloud.policy import default_policy

TOKYO = ZoneInfo("Asia/Tokyo")
P = default_policy()
DRIVER = Driver("D0000000001", "M0000001", dt.date(2030, 1, 1))
CAR = Car("car-1")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TOKYO)


def member(*late: str, revoked: bool = False) -> Member:
    return Member("M0000001", revoked=revoked, unauthorised_extensions=tuple(at(t) for t in late))


def open_reservations(n: int) -> list[Reservation]:
    return [
        Reservation(
            f"r{i}",
            f"car-x{i}",
            DRIVER.id,
            "M0000001",
            at(f"2025-06-{1 + i:02d} 10:00"),
            at(f"2025-06-{1 + i:02d} 11:00"),
        )
        for i in range(n)
    ]


def book(m: Member, now: str, start: str, *, existing=()):
    s = at(start)
    request = BookingRequest(DRIVER, DRIVER, m, CAR, s, s + dt.timedelta(hours=1))
    return check_booking(P, request, existing, at(now))


def test_the_first_unauthorised_extension_limits_the_next_calendar_month_to_one_reservation():
    # SPEC C-PEN-1: １回目は翌月の最大予約数を１回に制限
    m = member("2025-01-20 12:00")
    s = standing(P, m, at("2025-01-25 09:00"))
    assert not s.revoked and s.offences_in_window == 1
    assert s.limits == (Limit(1, dt.date(2025, 2, 1), dt.date(2025, 3, 1)),)
    d = book(m, "2025-02-10 09:00", "2025-02-11 10:00", existing=open_reservations(1))
    assert d.code == "penalty_limit" and not d.ok
    assert "2025-02-28" in d.message_ja and "2025-02-28" in d.message_en
    assert book(m, "2025-02-10 09:00", "2025-02-11 10:00").ok  # the one it may hold


def test_the_limit_covers_bookings_made_for_the_next_month_in_advance():
    # SPEC C-PEN-1: booking in January for February counts against February's limit
    m = member("2025-01-20 12:00")
    assert book(m, "2025-01-25 09:00", "2025-02-03 10:00", existing=open_reservations(1)).code == (
        "penalty_limit"
    )
    # the rest of January is not restricted
    assert book(m, "2025-01-25 09:00", "2025-01-26 10:00", existing=open_reservations(3)).ok


def test_the_limit_ends_with_the_month():
    # SPEC C-PEN-1
    m = member("2025-01-20 12:00")
    assert book(m, "2025-03-01 00:00", "2025-03-02 10:00", existing=open_reservations(14)).ok
    assert book(m, "2025-02-28 23:59", "2025-03-02 10:00", existing=open_reservations(1)).code == (
        "penalty_limit"
    )


def test_the_month_is_the_local_month():
    # SPEC C-PEN-1: 23:30 on 31 January in Tokyo is still January, 00:30 on 1 February is not
    january = Member(
        "M0000001", unauthorised_extensions=(dt.datetime(2025, 1, 31, 14, 30, tzinfo=dt.UTC),)
    )
    february = Member(
        "M0000001", unauthorised_extensions=(dt.datetime(2025, 1, 31, 15, 30, tzinfo=dt.UTC),)
    )
    now = at("2025-02-05 00:00")
    assert standing(P, january, now).limits[0].first == dt.date(2025, 2, 1)
    assert standing(P, february, now).limits[0].first == dt.date(2025, 3, 1)


def test_the_second_within_a_year_adds_no_limit_and_the_third_revokes():
    # SPEC C-PEN-1: １年以内に３回で会員資格取り消し
    twice = member("2025-01-20 12:00", "2025-03-10 12:00")
    s = standing(P, twice, at("2025-04-01 00:00"))
    assert not s.revoked and len(s.limits) == 1
    assert book(twice, "2025-04-01 09:00", "2025-04-02 10:00", existing=open_reservations(5)).ok
    thrice = member("2025-01-20 12:00", "2025-03-10 12:00", "2025-12-01 12:00")
    assert not standing(P, thrice, at("2025-11-30 00:00")).revoked  # not yet the third
    assert standing(P, thrice, at("2025-12-01 12:00")).revoked
    d = book(thrice, "2025-12-02 09:00", "2025-12-03 10:00")
    assert d.code == "membership_revoked" and not d.ok


def test_a_year_is_twelve_calendar_months_and_the_instant_a_year_before_is_outside():
    # SPEC C-PEN-1: within a year
    outside = member("2024-01-10 12:00", "2024-06-10 12:00", "2025-01-10 12:00")
    s = standing(P, outside, at("2025-01-11 00:00"))
    assert not s.revoked and s.offences_in_window == 2
    inside = member("2024-01-10 12:01", "2024-06-10 12:00", "2025-01-10 12:00")
    assert standing(P, inside, at("2025-01-11 00:00")).revoked


def test_a_first_again_after_a_quiet_year_limits_again():
    # SPEC C-PEN-1: "the first in a year"
    s = standing(P, member("2024-01-10 12:00", "2025-03-01 12:00"), at("2025-03-02 00:00"))
    assert [lim.first for lim in s.limits] == [dt.date(2024, 2, 1), dt.date(2025, 4, 1)]


def test_a_revoked_membership_stays_revoked_and_cannot_change_either():
    # SPEC C-PEN-1
    m = member(revoked=True)
    assert book(m, "2025-01-10 09:00", "2025-01-11 10:00").code == "membership_revoked"
    r = Reservation("r", "car-1", DRIVER.id, m.id, at("2025-01-12 10:00"), at("2025-01-12 11:00"))
    request = ChangeRequest(
        DRIVER, r, DRIVER, m, CAR, at("2025-01-12 11:00"), at("2025-01-12 12:00")
    )
    assert check_change(P, request, [r], at("2025-01-10 09:00")).code == "membership_revoked"


def test_only_extensions_up_to_now_count():
    # SPEC C-PEN-1
    s = standing(P, member("2025-01-20 12:00"), at("2025-01-20 11:59"))
    assert s.limits == () and s.offences_in_window == 0


def test_what_counts_as_an_unauthorised_extension():
    # SPEC C-PEN-1: returning late without extending; the instant recorded is the overrun end
    r = Reservation(
        "r",
        "car-1",
        DRIVER.id,
        "M0000001",
        at("2025-01-10 10:00"),
        at("2025-01-10 12:00"),
        Status.COMPLETED,
        started_at=at("2025-01-10 10:00"),
        returned_at=at("2025-01-10 12:00"),
    )
    assert unauthorised_extension_at(P, r) is None
    late = dataclasses.replace(r, returned_at=at("2025-01-10 12:01"))
    assert unauthorised_extension_at(P, late) == at("2025-01-10 12:00")
    extended = dataclasses.replace(late, end=at("2025-01-10 12:15"), extensions=1)
    assert unauthorised_extension_at(P, extended) is None
    running = dataclasses.replace(r, status=Status.IN_USE, returned_at=None)
    assert unauthorised_extension_at(P, running) is None

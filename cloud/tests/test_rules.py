"""The booking rules of SPEC §2 (C-*) under the car-sharing guide's policy, at their boundaries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import string
from zoneinfo import ZoneInfo

import pytest

from cloud.booking import (
    car_conflict,
    check_booking,
    check_cancel,
    check_change,
    check_extension,
    may_see,
    next_extension_end,
)
from cloud.decision import CODES, OK
from cloud.model import (
    BookingRequest,
    CancelRequest,
    Car,
    ChangeRequest,
    Driver,
    ExtensionRequest,
    Member,
    Reservation,
    Status,
)
from cloud.policy import default_policy

TOKYO = ZoneInfo("Asia/Tokyo")
P = default_policy()
MEMBER = Member("M0000001")
DRIVER = Driver("D0000000001", "M0000001", dt.date(2030, 1, 1))
OTHER = Driver("D0000000002", "M0000001", dt.date(2030, 1, 1))
ADMIN = Driver("D0000000009", "M0000001", dt.date(2030, 1, 1), admin=True)
CAR = Car("car-1")
NOW = "2025-01-10 09:00"


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TOKYO)


def res(rid, start, end, *, car="car-1", driver=DRIVER, status=Status.RESERVED, **kw):
    return Reservation(
        rid, car, driver.id, driver.member_id, at(start), at(end), status=status, **kw
    )


def book(
    start, end, *, existing=(), now=NOW, driver=DRIVER, actor=None, member=MEMBER, car=CAR, policy=P
):
    request = BookingRequest(actor or driver, driver, member, car, at(start), at(end))
    return check_booking(policy, request, existing, at(now))


def refused(decision, code):
    assert not decision.ok, decision
    assert decision.code == code, decision
    assert decision.message_ja and decision.message_en
    return True


# --- C-GRID-1 -------------------------------------------------------------------------------


def test_a_reservation_on_15_minute_marks_of_the_minimum_length_is_accepted_with_its_fee():
    # SPEC C-GRID-1, F-TIME-1: 30 minutes = two units of 150 yen
    d = book("2025-01-10 10:00", "2025-01-10 10:30")
    assert d.ok and d.code == "ok" and d.fee == 300
    assert "300" in d.message_ja and "300" in d.message_en


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2025-01-10 10:05", "2025-01-10 11:00"),
        ("2025-01-10 10:00", "2025-01-10 11:10"),
        ("2025-01-10 10:00:30", "2025-01-10 11:00"),
        ("2025-01-10 10:00:00.5", "2025-01-10 11:00"),
    ],
)
def test_times_off_the_15_minute_marks_are_refused(start, end):
    # SPEC C-GRID-1
    assert refused(book(start, end), "grid")


def test_shorter_than_30_minutes_or_ending_before_the_start_is_too_short():
    # SPEC C-GRID-1
    assert refused(book("2025-01-10 10:00", "2025-01-10 10:15"), "too_short")
    assert refused(book("2025-01-10 11:00", "2025-01-10 10:00"), "too_short")
    assert refused(book("2025-01-10 11:00", "2025-01-10 11:00"), "too_short")


def test_exactly_72_hours_is_allowed_and_15_minutes_more_is_too_long():
    # SPEC C-GRID-1
    assert book("2025-01-10 10:00", "2025-01-13 10:00").ok
    d = book("2025-01-10 10:00", "2025-01-13 10:15")
    assert refused(d, "too_long")
    assert "72時間" in d.message_ja and "72 hours" in d.message_en


def test_the_marks_are_local_marks_whatever_zone_the_request_is_written_in():
    # SPEC C-GRID-1: 10:00 in India (+05:30) is 13:30 in Tokyo, 10:00 in Nepal (+05:45) 13:15
    for zone in ("Asia/Kolkata", "Asia/Kathmandu", "UTC"):
        z = ZoneInfo(zone)
        start = dt.datetime(2025, 1, 10, 10, 0, tzinfo=z)
        request = BookingRequest(DRIVER, DRIVER, MEMBER, CAR, start, start + dt.timedelta(hours=1))
        assert check_booking(P, request, (), at(NOW)).ok, zone


def test_a_naive_time_is_refused_as_a_programming_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        BookingRequest(DRIVER, DRIVER, MEMBER, CAR, dt.datetime(2025, 1, 10, 10), at(NOW))
    with pytest.raises(ValueError, match="now: expected a timezone-aware"):
        check_booking(
            P,
            BookingRequest(DRIVER, DRIVER, MEMBER, CAR, at(NOW), at("2025-01-10 10:00")),
            (),
            dt.datetime(2025, 1, 10, 9),
        )


def test_a_reservation_cannot_start_in_the_past_but_may_start_right_now():
    # SPEC C-GRID-1 (start): the start is at or after now
    assert refused(book("2025-01-10 08:45", "2025-01-10 10:00"), "start_in_past")
    assert book("2025-01-10 09:00", "2025-01-10 10:00").ok
    assert refused(
        book("2025-01-10 09:00", "2025-01-10 10:00", now="2025-01-10 09:01"), "start_in_past"
    )


# --- C-HOR-1 --------------------------------------------------------------------------------


def test_bookable_up_to_three_months_ahead_to_the_day():
    # SPEC C-HOR-1: on 10 January, use dates up to 10 April open (利用日の3ヶ月前から)
    assert book("2025-04-10 23:30", "2025-04-11 00:30").ok
    d = book("2025-04-11 00:00", "2025-04-11 01:00")
    assert refused(d, "beyond_horizon")
    assert "2025-04-10" in d.message_ja and "2025-04-10" in d.message_en


def test_the_horizon_moves_at_local_midnight():
    # SPEC C-HOR-1: at 00:00 on 11 January (Tokyo), 11 April opens
    assert refused(
        book("2025-04-11 09:00", "2025-04-11 10:00", now="2025-01-10 23:59"), "beyond_horizon"
    )
    assert book("2025-04-11 09:00", "2025-04-11 10:00", now="2025-01-11 00:00").ok


def test_three_months_from_the_end_of_a_month_is_the_last_day_of_the_shorter_month():
    # SPEC C-HOR-1: 30 November + 3 months = 28 February
    now = "2025-11-30 12:00"
    assert book("2026-02-28 10:00", "2026-02-28 11:00", now=now).ok
    assert refused(book("2026-03-01 10:00", "2026-03-01 11:00", now=now), "beyond_horizon")


# --- C-MAX-1 --------------------------------------------------------------------------------


def _open(n, *, status=Status.RESERVED, member_driver=DRIVER):
    # n reservations on other cars, far from the request, alternating the member's drivers
    drivers = (member_driver, OTHER)
    return [
        res(
            f"r{i}",
            f"2025-02-{1 + i:02d} 10:00",
            f"2025-02-{1 + i:02d} 11:00",
            car=f"car-x{i}",
            driver=drivers[i % 2],
            status=status,
        )
        for i in range(n)
    ]


def test_the_15th_open_reservation_of_a_member_is_accepted_and_the_16th_refused():
    # SPEC C-MAX-1: all the member's drivers count together
    assert book("2025-01-10 10:00", "2025-01-10 11:00", existing=_open(14)).ok
    d = book("2025-01-10 10:00", "2025-01-10 11:00", existing=_open(15))
    assert refused(d, "member_limit")
    assert "15" in d.message_ja and "15" in d.message_en


def test_a_running_trip_is_open_but_cancelled_and_finished_ones_are_not():
    # SPEC C-MAX-1
    running = res(
        "run",
        "2025-01-10 08:00",
        "2025-01-10 12:00",
        car="car-9",
        driver=OTHER,
        status=Status.IN_USE,
        started_at=at("2025-01-10 08:00"),
    )
    assert refused(
        book("2025-01-10 13:00", "2025-01-10 14:00", existing=[*_open(14), running]), "member_limit"
    )
    gone = _open(10, status=Status.CANCELLED) + _open(10, status=Status.COMPLETED)
    assert book("2025-01-10 13:00", "2025-01-10 14:00", existing=[*_open(14), *gone]).ok


def test_another_members_reservations_do_not_count():
    # SPEC C-MAX-1
    stranger = Driver("D0000000077", "M0000077", dt.date(2030, 1, 1))
    theirs = _open(15, member_driver=stranger)
    theirs = [dataclasses.replace(r, driver_id=stranger.id, member_id="M0000077") for r in theirs]
    assert book("2025-01-10 10:00", "2025-01-10 11:00", existing=theirs).ok


# --- C-DRV-1 --------------------------------------------------------------------------------


def test_a_member_id_cannot_reserve():
    # SPEC C-DRV-1: the member (8-character ID) logged in
    d = book("2025-01-10 10:00", "2025-01-10 11:00", actor=MEMBER)
    assert refused(d, "not_a_driver")
    assert "運転者ID" in d.message_ja


def test_an_id_of_the_wrong_length_is_not_a_driver_id():
    # SPEC C-DRV-1: driver IDs have 11 characters
    short = Driver("D000001", "M0000001", dt.date(2030, 1, 1))
    assert refused(book("2025-01-10 10:00", "2025-01-10 11:00", driver=short), "not_a_driver")


def test_only_the_driver_or_an_admin_driver_of_the_member_books_for_a_driver():
    # SPEC C-DRV-1: a driver books for themself; an admin driver for the member's drivers
    assert refused(book("2025-01-10 10:00", "2025-01-10 11:00", actor=OTHER), "not_permitted")
    assert book("2025-01-10 10:00", "2025-01-10 11:00", actor=ADMIN).ok
    outsider = Driver("D0000000099", "M0000099", dt.date(2030, 1, 1), admin=True)
    assert refused(book("2025-01-10 10:00", "2025-01-10 11:00", actor=outsider), "not_permitted")


def test_a_driver_cannot_hold_two_overlapping_reservations_on_any_cars():
    # SPEC C-DRV-1: 同時間帯に同一運転者で複数の車両の予約を取ることはできません
    mine = [res("mine", "2025-01-10 10:00", "2025-01-10 12:00", car="car-2")]
    d = book("2025-01-10 11:00", "2025-01-10 13:00", existing=mine)
    assert refused(d, "driver_overlap")
    assert d.conflict_id == "mine"
    assert book("2025-01-10 12:00", "2025-01-10 13:00", existing=mine).ok  # back to back
    assert book("2025-01-10 11:00", "2025-01-10 13:00", existing=mine, driver=OTHER).ok


def test_a_running_trip_keeps_its_driver_busy_but_a_finished_one_does_not():
    # SPEC C-DRV-1
    trip = res(
        "trip",
        "2025-01-10 08:00",
        "2025-01-10 10:00",
        car="car-2",
        status=Status.IN_USE,
        started_at=at("2025-01-10 08:00"),
    )
    assert refused(book("2025-01-10 09:30", "2025-01-10 11:00", existing=[trip]), "driver_overlap")
    back = dataclasses.replace(trip, status=Status.COMPLETED, returned_at=at("2025-01-10 08:50"))
    assert book("2025-01-10 09:30", "2025-01-10 11:00", existing=[back]).ok


# --- C-CAR-1 --------------------------------------------------------------------------------

TAKEN = [res("taken", "2025-01-10 12:00", "2025-01-10 14:00", driver=OTHER)]


def test_the_30_minute_buffer_before_and_after_another_reservation_on_the_car():
    # SPEC C-CAR-1: 予約不可（予約開始時刻の30分前～予約終了時刻の30分後）
    assert book("2025-01-10 10:00", "2025-01-10 11:30", existing=TAKEN).ok
    d = book("2025-01-10 10:00", "2025-01-10 11:45", existing=TAKEN)
    assert refused(d, "car_buffer")
    assert d.conflict_id == "taken" and "30分" in d.message_ja
    assert book("2025-01-10 14:30", "2025-01-10 15:00", existing=TAKEN).ok
    assert refused(book("2025-01-10 14:15", "2025-01-10 15:00", existing=TAKEN), "car_buffer")
    assert refused(book("2025-01-10 12:30", "2025-01-10 13:00", existing=TAKEN), "car_buffer")
    assert refused(book("2025-01-10 10:00", "2025-01-10 16:00", existing=TAKEN), "car_buffer")


def test_the_buffer_holds_to_the_minute():
    # SPEC C-CAR-1: on a one-minute grid the buffer's edge is exact
    fine = dataclasses.replace(
        P, booking=dataclasses.replace(P.booking, grid=dt.timedelta(minutes=1))
    )
    assert book("2025-01-10 10:00", "2025-01-10 11:30", existing=TAKEN, policy=fine).ok
    assert refused(
        book("2025-01-10 10:00", "2025-01-10 11:31", existing=TAKEN, policy=fine), "car_buffer"
    )
    assert book("2025-01-10 14:30", "2025-01-10 15:00", existing=TAKEN, policy=fine).ok
    assert refused(
        book("2025-01-10 14:29", "2025-01-10 15:00", existing=TAKEN, policy=fine), "car_buffer"
    )


def test_cancelled_reservations_and_other_cars_do_not_block():
    # SPEC C-CAR-1
    gone = [dataclasses.replace(TAKEN[0], status=Status.CANCELLED)]
    assert book("2025-01-10 12:00", "2025-01-10 14:00", existing=gone).ok
    elsewhere = [dataclasses.replace(TAKEN[0], car_id="car-2")]
    assert book("2025-01-10 12:00", "2025-01-10 14:00", existing=elsewhere).ok


def test_a_car_not_yet_back_from_a_late_trip_blocks_until_it_is_back_plus_the_buffer():
    # SPEC C-CAR-1 with U-USE-4: the car keeps running past its end
    late = [
        res(
            "late",
            "2025-01-10 07:00",
            "2025-01-10 09:00",
            driver=OTHER,
            status=Status.IN_USE,
            started_at=at("2025-01-10 07:00"),
        )
    ]
    now = "2025-01-10 09:20"
    d = book("2025-01-10 09:45", "2025-01-10 10:30", existing=late, now=now)
    assert refused(d, "car_buffer")
    assert book("2025-01-10 10:00", "2025-01-10 10:30", existing=late, now=now).ok


def test_a_car_returned_early_is_free_30_minutes_after_its_return():
    # SPEC C-CAR-1, F-EARLY-1: the early return still pays; the car is free again
    early = [
        res(
            "early",
            "2025-01-10 07:00",
            "2025-01-10 12:00",
            driver=OTHER,
            status=Status.COMPLETED,
            started_at=at("2025-01-10 07:00"),
            returned_at=at("2025-01-10 08:40"),
        )
    ]
    assert book("2025-01-10 09:15", "2025-01-10 10:00", existing=early).ok
    assert (
        car_conflict(P, CAR, at("2025-01-10 09:00"), at("2025-01-10 10:00"), early, at(NOW))
        is early[0]
    )


# --- C-LIC-1 --------------------------------------------------------------------------------


def test_a_reservation_may_end_at_the_end_of_the_licences_last_day_and_not_later():
    # SPEC C-LIC-1: the expiry date is the last day the licence is valid (as in the car, U-LIC-1)
    expiring = Driver("D0000000001", "M0000001", dt.date(2025, 1, 20))
    assert book("2025-01-20 22:00", "2025-01-20 23:45", driver=expiring).ok
    assert book("2025-01-20 22:00", "2025-01-21 00:00", driver=expiring).ok
    d = book("2025-01-20 22:00", "2025-01-21 00:15", driver=expiring)
    assert refused(d, "licence_expired")
    assert "2025-01-20" in d.message_ja and "2025-01-20" in d.message_en


def test_an_expired_or_missing_licence_cannot_reserve():
    # SPEC C-LIC-1
    expired = Driver("D0000000001", "M0000001", dt.date(2025, 1, 9))
    assert refused(book("2025-01-10 10:00", "2025-01-10 11:00", driver=expired), "licence_expired")
    missing = Driver("D0000000001", "M0000001", None)
    assert refused(book("2025-01-10 10:00", "2025-01-10 11:00", driver=missing), "licence_expired")


# --- C-CHG-1 --------------------------------------------------------------------------------

MINE = res("mine", "2025-01-10 12:00", "2025-01-10 14:00")


def change(reservation, start, end, *, now, existing=(), actor=DRIVER, driver=DRIVER):
    request = ChangeRequest(actor, reservation, driver, MEMBER, CAR, at(start), at(end))
    return check_change(P, request, existing, at(now))


def test_changes_are_possible_until_exactly_60_minutes_before_the_start():
    # SPEC C-CHG-1: 予約開始時刻の60分前まで
    d = change(MINE, "2025-01-10 12:00", "2025-01-10 15:00", now="2025-01-10 11:00")
    assert d.ok and d.fee == 1500  # 3 h: one 3 h pack
    d = change(MINE, "2025-01-10 12:00", "2025-01-10 15:00", now="2025-01-10 11:00:01")
    assert refused(d, "change_deadline")
    assert "60分前" in d.message_ja and "60 minutes before the start" in d.message_en


def test_at_most_two_changes():
    # SPEC C-CHG-1: 予約の変更は2回まで
    once = dataclasses.replace(MINE, changes=1)
    assert change(once, "2025-01-10 13:00", "2025-01-10 14:00", now=NOW).ok
    twice = dataclasses.replace(MINE, changes=2)
    assert refused(change(twice, "2025-01-10 13:00", "2025-01-10 14:00", now=NOW), "change_limit")


def test_a_started_finished_or_cancelled_reservation_cannot_be_changed():
    # SPEC C-CHG-1
    for status in (Status.IN_USE, Status.COMPLETED, Status.CANCELLED):
        r = dataclasses.replace(MINE, status=status)
        assert refused(change(r, "2025-01-10 13:00", "2025-01-10 14:00", now=NOW), "not_changeable")


def test_a_change_is_left_out_of_its_own_checks_but_obeys_the_others():
    # SPEC C-CHG-1 with C-CAR-1, C-GRID-1, C-MAX-1
    assert change(MINE, "2025-01-10 12:30", "2025-01-10 14:30", now=NOW, existing=[MINE]).ok
    full = [MINE, *_open(14)]  # 15 open: a change does not add one
    assert change(MINE, "2025-01-10 12:30", "2025-01-10 14:30", now=NOW, existing=full).ok
    next_one = res("next", "2025-01-10 15:00", "2025-01-10 16:00", driver=OTHER)
    d = change(MINE, "2025-01-10 12:30", "2025-01-10 14:45", now=NOW, existing=[MINE, next_one])
    assert refused(d, "car_buffer") and d.conflict_id == "next"
    assert refused(change(MINE, "2025-01-10 12:10", "2025-01-10 14:00", now=NOW), "grid")
    assert refused(change(MINE, "2025-01-10 12:00", "2025-01-10 14:00", now=NOW), "unchanged")


def test_another_driver_cannot_change_it_but_an_admin_driver_can():
    # SPEC C-DRV-1, C-CHG-1
    assert refused(
        change(MINE, "2025-01-10 13:00", "2025-01-10 14:00", now=NOW, actor=OTHER), "not_permitted"
    )
    assert change(MINE, "2025-01-10 13:00", "2025-01-10 14:00", now=NOW, actor=ADMIN).ok
    assert refused(
        change(MINE, "2025-01-10 13:00", "2025-01-10 14:00", now=NOW, actor=MEMBER), "not_a_driver"
    )


def test_a_change_request_names_the_reservations_own_driver():
    with pytest.raises(ValueError, match="belongs to driver"):
        change(MINE, "2025-01-10 13:00", "2025-01-10 14:00", now=NOW, driver=OTHER)


# --- C-CAN-1 --------------------------------------------------------------------------------

NINE_HOURS = res("nine", "2025-01-10 12:00", "2025-01-10 21:00")  # time fee 4,500 (3 x 3 h)


def cancel(reservation, now, actor=DRIVER):
    return check_cancel(P, CancelRequest(actor, reservation, CAR), at(now))


@pytest.mark.parametrize(
    ("now", "fee"),
    [
        ("2025-01-09 12:00", 0),
        ("2025-01-10 11:00", 0),  # exactly 60 minutes before: still free
        ("2025-01-10 11:00:01", 2250),  # 50 %
        ("2025-01-10 11:59", 2250),
        ("2025-01-10 12:00", 2250),  # until the start
        ("2025-01-10 12:00:01", 4500),  # 100 % after the start
        ("2025-01-10 22:00", 4500),
    ],
)
def test_cancelling_is_free_then_half_then_the_whole_time_fee(now, fee):
    # SPEC C-CAN-1, F-CAN-1
    d = cancel(NINE_HOURS, now)
    assert d.ok and d.fee == fee
    assert f"{fee:,}" in d.message_ja and f"{fee:,}" in d.message_en


def test_a_started_trip_cannot_be_cancelled_nor_someone_elses():
    # SPEC C-CAN-1
    started = dataclasses.replace(
        NINE_HOURS, status=Status.IN_USE, started_at=at("2025-01-10 12:00")
    )
    assert refused(cancel(started, "2025-01-10 12:05"), "not_cancellable")
    assert refused(cancel(NINE_HOURS, NOW, actor=OTHER), "not_permitted")
    assert cancel(NINE_HOURS, NOW, actor=ADMIN).ok


# --- C-EXT-1 --------------------------------------------------------------------------------

TRIP = res(
    "trip",
    "2025-01-10 10:00",
    "2025-01-10 12:00",
    status=Status.IN_USE,
    started_at=at("2025-01-10 09:50"),
)


def extend(reservation, end, *, now="2025-01-10 11:00", existing=(), actor=DRIVER, driver=DRIVER):
    request = ExtensionRequest(actor, reservation, driver, CAR, at(end))
    return check_extension(P, request, existing, at(now))


def test_plus_15_minutes_or_to_a_later_mark_during_the_trip():
    # SPEC C-EXT-1, F-TIME-1: the fee is that of the whole extended reservation
    assert next_extension_end(P, CAR, TRIP) == at("2025-01-10 12:15")
    d = extend(TRIP, "2025-01-10 12:15")
    assert d.ok and d.fee == 1350  # 2 h 15 = 9 units
    assert extend(TRIP, "2025-01-10 13:00").fee == 1500  # 3 h pack
    assert refused(extend(TRIP, "2025-01-10 12:10"), "grid")


def test_never_shortened():
    # SPEC C-EXT-1: 短縮は不可
    assert refused(extend(TRIP, "2025-01-10 12:00"), "not_longer")
    assert refused(extend(TRIP, "2025-01-10 11:45"), "not_longer")


def test_until_the_end_time_and_not_after_it_has_passed():
    # SPEC C-EXT-1
    assert extend(TRIP, "2025-01-10 12:15", now="2025-01-10 12:00").ok
    assert refused(extend(TRIP, "2025-01-10 12:15", now="2025-01-10 12:00:01"), "end_passed")


def test_only_during_the_trip():
    # SPEC C-EXT-1: from the start operation
    before = dataclasses.replace(TRIP, status=Status.RESERVED, started_at=None)
    assert refused(extend(before, "2025-01-10 12:15", now="2025-01-10 09:55"), "not_in_use")
    done = dataclasses.replace(TRIP, status=Status.COMPLETED, returned_at=at("2025-01-10 11:00"))
    assert refused(extend(done, "2025-01-10 12:15"), "not_in_use")


def test_at_most_twice():
    # SPEC C-EXT-1: 延長は2回まで
    assert extend(dataclasses.replace(TRIP, extensions=1), "2025-01-10 12:15").ok
    d = extend(dataclasses.replace(TRIP, extensions=2), "2025-01-10 12:15")
    assert refused(d, "extension_limit") and "2" in d.message_en


def test_only_while_the_next_reservation_keeps_its_30_minute_buffer():
    # SPEC C-EXT-1 with C-CAR-1: 次の利用者の予約が入っていない場合のみ
    following = [res("next", "2025-01-10 13:00", "2025-01-10 14:00", driver=OTHER)]
    assert extend(TRIP, "2025-01-10 12:30", existing=following).ok
    d = extend(TRIP, "2025-01-10 12:45", existing=following)
    assert refused(d, "extension_conflict") and d.conflict_id == "next"


def test_an_extension_keeps_the_72_hours_the_licence_and_the_drivers_next_trip():
    # SPEC C-EXT-1 with C-GRID-1, C-LIC-1, C-DRV-1
    long_trip = dataclasses.replace(TRIP, end=at("2025-01-13 09:45"))
    assert extend(long_trip, "2025-01-13 10:00").ok
    assert refused(extend(long_trip, "2025-01-13 10:15"), "too_long")
    expiring = Driver("D0000000001", "M0000001", dt.date(2025, 1, 10))
    late_night = dataclasses.replace(TRIP, end=at("2025-01-10 23:45"))
    assert extend(late_night, "2025-01-11 00:00", driver=expiring).ok
    assert refused(extend(late_night, "2025-01-11 00:15", driver=expiring), "licence_expired")
    other_car = [res("other", "2025-01-10 12:30", "2025-01-10 13:00", car="car-2")]
    assert refused(extend(TRIP, "2025-01-10 12:45", existing=other_car), "driver_overlap")


def test_another_driver_cannot_extend_it():
    # SPEC C-DRV-1, C-EXT-1
    assert refused(extend(TRIP, "2025-01-10 12:15", actor=OTHER), "not_permitted")


# --- visibility, messages -------------------------------------------------------------------


def test_who_sees_which_reservations():
    # guide §2 *1 *2: the member ID and an admin driver see all; a driver sees their own
    mine, others = MINE, dataclasses.replace(MINE, id="o", driver_id=OTHER.id)
    assert may_see(MEMBER, mine) and may_see(MEMBER, others)
    assert may_see(ADMIN, mine) and may_see(ADMIN, others)
    assert may_see(DRIVER, mine) and not may_see(DRIVER, others)
    assert not may_see(Member("M0000099"), mine)


def test_every_code_has_a_japanese_and_an_english_message_with_the_same_parameters():
    def fields(template):
        return {
            name.removesuffix("_ja").removesuffix("_en")
            for _, name, _, _ in string.Formatter().parse(template)
            if name
        }

    for code, (ja, en) in CODES.items():
        assert ja and en and ja != en, code
        assert any(ord(c) > 0x3000 for c in ja), code
        assert en.isascii() or "¥" in en, code
        assert fields(ja) == fields(en), code
    for what, (ja, en) in OK.items():
        assert "{fee:,}" in ja and "{fee:,}" in en, what

"""The neighbouring systems of SPEC §5 as policies of the same engine: the city's parking-space
service (reference 000_…) and the prefecture's facility system (reference 003_…)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from cloud.booking import check_booking, check_cancel, check_change, check_extension
from cloud.fees import invoice
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
from cloud.policy import bundled_policy

TOKYO = ZoneInfo("Asia/Tokyo")
PARKING = bundled_policy("parking")
FACILITY = bundled_policy("facility")
MEMBER = Member("M0000001")
GUEST = Driver("D0000000001", "M0000001", None)  # no licence: neither service asks for one
SPACE = Car("space-12")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TOKYO)


def book(policy, start, end, now, *, car=SPACE, existing=(), driver=GUEST):
    request = BookingRequest(driver, driver, MEMBER, car, at(start), at(end))
    return check_booking(policy, request, existing, at(now))


def reservation(rid, start, end, *, car=SPACE, **kw):
    return Reservation(rid, car.id, GUEST.id, MEMBER.id, at(start), at(end), **kw)


# --- the parking service --------------------------------------------------------------------


def test_parking_opens_each_day_at_midnight_13_days_ahead():
    # SPEC §5 (000_…): 11月4日の予約は10月22日の0:00から可能
    d = book(PARKING, "2023-11-04 00:00", "2023-11-05 00:00", "2023-10-21 23:59")
    assert d.code == "beyond_horizon" and "2023-11-03" in d.message_en
    d = book(PARKING, "2023-11-04 00:00", "2023-11-05 00:00", "2023-10-22 00:00")
    assert d.ok and d.fee == 1000


def test_parking_books_whole_days_and_every_day_of_a_stay_must_be_open():
    # SPEC §5: one-day units; consecutive days allowed (連日利用)
    now = "2023-10-22 00:00"
    assert book(PARKING, "2023-11-04 07:00", "2023-11-04 19:00", now).code == "grid"
    assert book(PARKING, "2023-11-03 00:00", "2023-11-05 00:00", now).fee == 2000
    assert book(PARKING, "2023-11-04 00:00", "2023-11-06 00:00", now).code == "beyond_horizon"


def test_parking_today_can_be_booked_while_it_runs_but_not_yesterday():
    # SPEC §5: 空きがある状態であればご予約後すぐに利用することができます
    assert book(PARKING, "2023-11-04 00:00", "2023-11-05 00:00", "2023-11-04 10:00").ok
    d = book(PARKING, "2023-11-03 00:00", "2023-11-05 00:00", "2023-11-04 10:00")
    assert d.code == "start_in_past"


def test_parking_one_space_one_booking_a_day_but_one_person_may_book_two_spaces():
    # SPEC §5 with C-CAR-1 (buffer 0) and C-DRV-1 (not exclusive here)
    taken = [reservation("a", "2023-11-04 00:00", "2023-11-05 00:00")]
    now = "2023-10-25 12:00"
    d = book(PARKING, "2023-11-04 00:00", "2023-11-05 00:00", now, existing=taken)
    assert d.code == "car_buffer"
    assert book(PARKING, "2023-11-05 00:00", "2023-11-06 00:00", now, existing=taken).ok
    other_space = Car("space-13")
    assert book(
        PARKING, "2023-11-04 00:00", "2023-11-05 00:00", now, existing=taken, car=other_space
    ).ok


def test_parking_has_no_member_limit_and_no_licence_check():
    # SPEC §5: no membership, no driving licence
    many = [
        reservation(f"r{i}", "2023-11-04 00:00", "2023-11-05 00:00", car=Car(f"s{i}"))
        for i in range(30)
    ]
    assert book(
        PARKING, "2023-11-04 00:00", "2023-11-05 00:00", "2023-10-25 12:00", existing=many
    ).ok


@pytest.mark.parametrize(
    ("now", "fee"),
    [
        ("2023-10-30 12:00", 0),
        ("2023-11-03 23:59", 0),
        ("2023-11-04 00:00", 2000),
        ("2023-11-04 18:00", 2000),
    ],
)
def test_parking_cancels_free_until_the_day_before_and_at_100_percent_on_the_day(now, fee):
    # SPEC §5: 利用日の1日前まで無料, 利用日当日 利用料金の100%
    r = reservation("r", "2023-11-04 00:00", "2023-11-06 00:00")
    d = check_cancel(PARKING, CancelRequest(GUEST, r, SPACE), at(now))
    assert d.ok and d.fee == fee


def test_parking_times_cannot_be_changed_nor_extended():
    # SPEC §5: ご予約の変更は車両ナンバーのみ; 時間を延長することはできません
    r = reservation("r", "2023-11-04 00:00", "2023-11-05 00:00")
    change = ChangeRequest(
        GUEST, r, GUEST, MEMBER, SPACE, at("2023-11-05 00:00"), at("2023-11-06 00:00")
    )
    d = check_change(PARKING, change, [r], at("2023-10-25 12:00"))
    assert (
        d.code == "change_limit"
        and d.message_en == "The times of this reservation cannot be changed."
    )
    running = dataclasses.replace(r, status=Status.IN_USE, started_at=at("2023-11-04 08:00"))
    ext = ExtensionRequest(GUEST, running, GUEST, SPACE, at("2023-11-06 00:00"))
    assert check_extension(PARKING, ext, [running], at("2023-11-04 10:00")).code == (
        "extension_limit"
    )


def test_parking_invoices_only_the_days():
    # SPEC §5, F-TIME-1: one-day units, no distance fee
    r = reservation(
        "r",
        "2023-11-04 00:00",
        "2023-11-06 00:00",
        status=Status.COMPLETED,
        started_at=at("2023-11-04 08:00"),
        returned_at=at("2023-11-05 18:00"),
    )
    inv = invoice(PARKING, SPACE, r, distance_km=12)
    assert [(line.code, line.yen) for line in inv.lines] == [("time", 2000)]
    assert "1日×2" in inv.lines[0].label_ja


# --- the facility system --------------------------------------------------------------------

ROOM = Car("archives-room-1")  # 公文書館: every place 7 days
HALL = Car("plaza-hall", kind="hall")  # 地球市民かながわプラザ プラザホール: 14 days
LARGE = Car("labour-plaza-main-hall", kind="large_hall")  # かながわ労働プラザ 多目的ホール: 60


@pytest.mark.parametrize(
    ("car", "last_day", "first_late_day", "words"),
    [
        (ROOM, "2025-03-13", "2025-03-14", "7日前"),
        (HALL, "2025-03-06", "2025-03-07", "14日前"),
        (LARGE, "2025-01-19", "2025-01-20", "60日前"),
    ],
)
def test_facility_change_and_cancel_deadlines_are_per_kind_of_place(
    car, last_day, first_late_day, words
):
    # SPEC §5 (003_… 別表2): 利用日の7日前 / 14日前 / 60日前, per place
    r = reservation("r", "2025-03-20 13:00", "2025-03-20 15:00", car=car, changes=5)
    change = ChangeRequest(
        GUEST, r, GUEST, MEMBER, car, at("2025-03-20 14:00"), at("2025-03-20 16:00")
    )
    assert check_change(FACILITY, change, [r], at(f"{last_day} 23:59")).ok  # any number of changes
    late = check_change(FACILITY, change, [r], at(f"{first_late_day} 00:00"))
    assert late.code == "change_deadline" and words in late.message_ja
    cancel = CancelRequest(GUEST, r, car)
    assert check_cancel(FACILITY, cancel, at(f"{last_day} 23:59")).fee == 0
    refused = check_cancel(FACILITY, cancel, at(f"{first_late_day} 00:00"))
    assert refused.code == "cancel_deadline" and not refused.ok and words in refused.message_ja


def test_facility_bookings_open_at_five_in_the_morning():
    # SPEC §5 (003_… 第13条): 受付開始初日については、午前5時から
    assert (
        book(FACILITY, "2025-07-10 10:00", "2025-07-10 12:00", "2025-01-10 04:59", car=ROOM).code
        == "beyond_horizon"
    )
    assert book(FACILITY, "2025-07-10 10:00", "2025-07-10 12:00", "2025-01-10 05:00", car=ROOM).ok


def test_a_group_may_hold_two_rooms_at_once():
    # SPEC §5 with C-DRV-1 (not exclusive here) and C-CAR-1
    taken = [reservation("a", "2025-03-20 13:00", "2025-03-20 15:00", car=ROOM)]
    assert book(
        FACILITY,
        "2025-03-20 13:00",
        "2025-03-20 15:00",
        "2025-01-10 09:00",
        car=HALL,
        existing=taken,
    ).ok
    assert (
        book(
            FACILITY,
            "2025-03-20 14:00",
            "2025-03-20 16:00",
            "2025-01-10 09:00",
            car=ROOM,
            existing=taken,
        ).code
        == "car_buffer"
    )

"""The store's rows convert into the values the rules take, and a booking decided from them."""

from __future__ import annotations

import datetime as dt

from cloud.booking import check_booking
from cloud.model import (
    BookingRequest,
    Status,
    car_from,
    driver_from,
    member_from,
    refuel_from,
    reservation_from,
)
from cloud.policy import default_policy
from cloud.store import records

T0 = dt.datetime(2025, 1, 10, 0, 0, tzinfo=dt.UTC)  # 09:00 in Tokyo


def test_rows_from_the_store_convert_and_decide():
    # SPEC C-CAR-1, C-PEN-1: the same decision whether the values came from the store or not
    member = records.Member("XXY00001", "Kagi Taro", None, "active", T0)
    driver = records.Driver(
        "XXY00001001", "XXY00001", "Kagi Taro", "t@example.com", True, dt.date(2030, 1, 1), T0
    )
    car = records.Car("car-1", "st-1", "Belta", "compact", T0)
    row = records.Reservation(
        "r1",
        "car-1",
        "XXY00001001",
        "XXY00001",
        T0 + dt.timedelta(hours=3),
        T0 + dt.timedelta(hours=5),
        30,
        "in_use",
        1,
        2,
        None,
        3,
        T0,
        T0,
        started_at=T0 + dt.timedelta(hours=3),
    )
    r = reservation_from(row)
    assert (r.id, r.status, r.changes, r.extensions, r.started_at) == (
        "r1",
        Status.IN_USE,
        1,
        2,
        T0 + dt.timedelta(hours=3),
    )
    d = driver_from(driver)
    assert d.admin and d.id == "XXY00001001" and d.licence_expiry == dt.date(2030, 1, 1)
    c = car_from(car)
    assert c.kind == "compact"
    m = member_from(member, [T0 - dt.timedelta(days=400)])
    assert not m.revoked and m.unauthorised_extensions == (T0 - dt.timedelta(days=400),)
    assert member_from(records.Member("XXY00001", "", None, "revoked", T0)).revoked
    assert refuel_from(records.Refuel(1, "r1", T0, 21.5, True)).litres == 21.5

    request = BookingRequest(
        d, d, m, c, r.end + dt.timedelta(minutes=15), r.end + dt.timedelta(hours=2)
    )
    decision = check_booking(default_policy(), request, [r], T0)
    assert decision.code == "car_buffer" and decision.conflict_id == "r1"

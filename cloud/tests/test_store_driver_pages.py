"""The store's part of the drivers' pages on SQLite and on a real PostgreSQL server (SPEC
P-WEB-6, P-WEB-7): change applications and their one decision, damage reports with photos and
their console alert — what the operator console reads."""

from __future__ import annotations

import datetime as dt

import pytest

from cloud.store import Conflict, InvalidValue, NotFound, Store

JST = dt.timezone(dt.timedelta(hours=9))
T = dt.datetime(2026, 11, 24, 10, 0, tzinfo=JST)
BOB, CAROL = "XXY00001002", "XXY00002001"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 40


@pytest.fixture
def fleet(db: Store) -> Store:
    db.add_station("tokai-1", name="Tokai 1", lat=36.4466, lon=140.6065, radius_m=50)
    for car in ("car-001", "car-002"):
        db.add_car(car, station_id="tokai-1")
    db.add_member("XXY00001", name="Member One")
    db.add_member("XXY00002", name="Member Two")
    expiry = dt.date(2030, 12, 31)
    db.add_driver(BOB, name="Bob", email="b@example.jp", licence_expiry=expiry)
    db.add_driver(CAROL, name="Carol", email="c@example.jp", licence_expiry=expiry)
    return db


def test_a_change_application_is_decided_once_and_an_approval_applies(fleet: Store, clock):
    """P-WEB-6: pending until the operator decides; approving applies the name and licence
    expiry the drivers table holds; a second decision is a Conflict; bad input names the
    field and stores nothing."""
    a = fleet.add_change_application(
        BOB, {"address": "Tokai 1-2-3", "licence_expiry": "2035-01-31"}, "renewed"
    )
    b = fleet.add_change_application(CAROL, {"name": "Carol Smith"})
    assert [x.application_id for x in fleet.list_change_applications("pending")] == [
        a.application_id, b.application_id,
    ]  # fmt: skip
    assert fleet.list_change_applications(driver_id=CAROL) == [b]
    clock.advance(hours=1)
    approved = fleet.decide_change_application(a.application_id, True, "op-1", "ok")
    assert (approved.status, approved.decided_by, approved.reason) == ("approved", "op-1", "ok")
    assert approved.decided_at == clock.now
    assert fleet.get_driver(BOB).licence_expiry == dt.date(2035, 1, 31)
    rejected = fleet.decide_change_application(b.application_id, False, "op-1", "no proof")
    assert rejected.status == "rejected" and fleet.get_driver(CAROL).name == "Carol"
    with pytest.raises(Conflict):
        fleet.decide_change_application(a.application_id, False, "op-2")
    assert fleet.list_change_applications("pending") == []
    assert [x.status for x in fleet.list_change_applications()] == ["approved", "rejected"]
    with pytest.raises(NotFound):
        fleet.decide_change_application(999, True, "op-1")
    for fields in ({}, {"password": "x"}, {"licence_expiry": "soon"}, {"address": " "}):
        with pytest.raises(InvalidValue):
            fleet.add_change_application(BOB, fields)
    with pytest.raises(InvalidValue):
        fleet.list_change_applications("maybe")
    assert len(fleet.list_change_applications()) == 2


def test_a_damage_report_keeps_its_photos_with_the_reservation_and_car(fleet: Store):
    """P-WEB-7: listed per car and per reservation, newest first, with the photos' bytes as
    sent; a photo of another type, or a kind not known, stores nothing."""
    r1 = fleet.create_reservation(
        car_id="car-001", driver_id=BOB, start=T, end=T + dt.timedelta(hours=2), buffer_minutes=30
    )
    r2 = fleet.create_reservation(
        car_id="car-002", driver_id=CAROL, start=T, end=T + dt.timedelta(hours=2),
        buffer_minutes=30,
    )  # fmt: skip
    first = fleet.add_damage_report(
        r1.reservation_id, driver_id=BOB, kind="flat_tyre", note="rear left",
        photos=[("image/png", PNG), ("image/jpeg", JPEG)],
    )  # fmt: skip
    fleet.add_damage_report(r2.reservation_id, driver_id=CAROL, kind="dirt")
    assert first.car_id == "car-001" and [p.size for p in first.photos] == [len(PNG), len(JPEG)]
    assert fleet.list_damage_reports(car_id="car-001") == [first]
    assert fleet.list_damage_reports(reservation_id=r1.reservation_id) == [first]
    assert len(fleet.list_damage_reports()) == 2
    assert fleet.damage_photo(first.photos[1].photo_id) == (first.report_id, "image/jpeg", JPEG)
    with pytest.raises(NotFound):
        fleet.damage_photo(12345)
    for bad in (
        {"kind": "scratch"},
        {"kind": "dirt", "photos": [("image/gif", b"GIF89a")]},
        {"kind": "dirt", "photos": [("image/png", b"")]},
    ):
        with pytest.raises(InvalidValue):
            fleet.add_damage_report(r1.reservation_id, driver_id=BOB, **bad)
    with pytest.raises(NotFound):
        fleet.add_damage_report("nope", driver_id=BOB, kind="dirt")
    assert len(fleet.list_damage_reports()) == 2

"""The account and the damage report on the phone site, in headless Chromium at 360 px against
a real `kagi cloud serve`: the e-mail address changed directly, an application for the other
details stored for the operator and its decision shown (SPEC P-WEB-6); a damage report with a
photo kept with the reservation and raised to the console, a file that is not a photo refused
with a clear message (P-WEB-7)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from cloud.driver_requests import MAX_PHOTO_BYTES
from cloud.tests.phone_help import JST, Client, database, log_in
from cloud.tests.sites import START, Site

DAY = dt.date(2027, 4, 10)


def png() -> bytes:
    """A real 2x2 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_the_driver_changes_the_e_mail_address_and_applies_for_the_rest(
    site: Site, phone: Any
) -> None:
    """P-WEB-6: the account shows member and driver details; the e-mail address changes at
    once; an address and a renewed licence are an application, stored pending for the console;
    approved there, the licence expiry is the driver's and the page shows the decision."""
    site.set_time(START)
    page = log_in(site, phone, "XXY00001002")
    page.click("nav-account")
    page.until(lambda: page.has("account-driver"), "the account page")
    assert "XXY00001" in page.text("account-member")
    assert "bob@example.jp" in page.text("driver-email")
    assert "2030-12-31" in page.text("driver-licence")
    assert page.fits_width()

    page.type("email", "not-an-address")
    phone.execute_script("document.getElementById('email').type = 'text'")  # past the browser
    page.click("email-save")
    page.shows("error", "メールアドレスの形式が正しくありません")
    page.type("email", "bob.new@example.jp")
    page.click("email-save")
    page.shows("notice", "メールアドレスを変更しました")
    assert "bob.new@example.jp" in page.text("driver-email")

    page.type("apply-address", "茨城県那珂郡東海村 1-2-3")
    page.type("apply-licence_expiry", "2035-06-30")
    page.type("apply-note", "免許更新のため")
    page.click("apply-send")
    page.shows("notice", "申請を受け付けました")
    with database(site) as db:
        assert db.get_driver("XXY00001002").email == "bob.new@example.jp"
        pending = db.list_change_applications("pending")
        assert [(a.driver_id, a.fields, a.note) for a in pending] == [
            (
                "XXY00001002",
                {"address": "茨城県那珂郡東海村 1-2-3", "licence_expiry": "2035-06-30"},
                "免許更新のため",
            )
        ]
        assert db.get_driver("XXY00001002").licence_expiry == dt.date(2030, 12, 31)
    app_id = pending[0].application_id
    assert page.data(f"application-{app_id}", "status") == "pending"

    page.click("apply-send")  # an empty application
    page.shows("error", "変更する項目を1つ以上入力してください")

    with database(site) as db:  # the operator approves it on the console
        from cloud.store import Conflict

        decided = db.decide_change_application(app_id, True, "op-1", "確認しました")
        assert decided.status == "approved" and decided.decided_by == "op-1"
        assert db.get_driver("XXY00001002").licence_expiry == dt.date(2035, 6, 30)
        with pytest.raises(Conflict):
            db.decide_change_application(app_id, False, "op-1")
        assert db.list_change_applications("pending") == []
    page.open("/account")
    assert page.data(f"application-{app_id}", "status") == "approved"
    assert "2035-06-30" in page.text("driver-licence")


def test_a_damage_report_with_a_photo_is_kept_and_a_non_image_is_refused(
    site: Site, phone: Any, tmp_path: Path
) -> None:
    """P-WEB-7: before driving, the driver reports dirt with a note and a photo; it is kept
    with the reservation, its photo served back, and the console gets an alert; a file that
    is not a JPEG, PNG or WebP by its bytes (whatever its name) is refused, saying so; so is
    a photo over the size cap."""
    site.set_time(START)
    with database(site) as db:
        rid = db.create_reservation(
            car_id="car-002", driver_id="XXY00002001",
            start=dt.datetime.combine(DAY, dt.time(10), JST),
            end=dt.datetime.combine(DAY, dt.time(12), JST), buffer_minutes=30,
        ).reservation_id  # fmt: skip
    page = log_in(site, phone, "XXY00002001")
    page.open(f"/reservations/{rid}")
    page.click("damage-link")
    page.until(lambda: page.has("damage-form"), "the report form")
    assert page.fits_width()

    fake = tmp_path / "photo.png"
    fake.write_bytes(b"MZ\x90\x00 this is a program, not a photo")
    page.choose("damage-kind", "dirt")
    page.type("damage-note", "後部座席に泥汚れ")
    page.el("damage-photos").send_keys(str(fake))
    page.click("damage-send")
    page.shows("error", "添付できるのは写真（JPEG・PNG・WebP）のみです")
    with database(site) as db:
        assert db.list_damage_reports(reservation_id=rid) == []

    photo = tmp_path / "seat.png"
    photo.write_bytes(png())
    page.choose("damage-kind", "dirt")
    page.type("damage-note", "後部座席に泥汚れ")
    page.el("damage-photos").send_keys(str(photo))
    page.click("damage-send")
    page.until(lambda: page.path == f"/reservations/{rid}", "the reservation's page")
    page.shows("notice", "報告を受け付けました")
    with database(site) as db:
        (report,) = db.list_damage_reports(car_id="car-002")
        assert (report.reservation_id, report.driver_id, report.kind, report.note) == (
            rid, "XXY00002001", "dirt", "後部座席に泥汚れ",
        )  # fmt: skip
        assert [(p.content_type, p.size) for p in report.photos] == [("image/png", len(png()))]
        assert db.damage_photo(report.photos[0].photo_id)[2] == png()
    with contextlib.closing(sqlite3.connect(site.db)) as raw:
        alerts = raw.execute("SELECT kind, car_id FROM alerts").fetchall()
    assert alerts == [("damage_report", "car-002")], "the console's alert (O-ALERT-1)"
    page.click("damage-link")
    page.until(lambda: page.has(f"damage-report-{report.report_id}"), "the report listed")
    assert page.data(f"damage-report-{report.report_id}", "photos") == "1"

    carol = Client(site, "XXY00002001")
    try:
        served = carol.http.get(f"/damage-photos/{report.photos[0].photo_id}")
        assert served.status_code == 200 and served.content == png()
        assert served.headers["content-type"] == "image/png"
        big = b"\xff\xd8\xff" + b"\x00" * MAX_PHOTO_BYTES
        answer = carol.post(
            f"/reservations/{rid}/damage",
            {"kind": "damage", "note": "big"},
            files=[("photos", ("big.jpg", big, "image/jpeg"))],
        )
        assert answer.status_code == 413 and "5MBまで" in answer.text
    finally:
        carol.close()
    bob = Client(site, "XXY00001002")
    try:
        assert bob.http.get(f"/damage-photos/{report.photos[0].photo_id}").status_code == 404
    finally:
        bob.close()
    with database(site) as db:
        assert len(db.list_damage_reports(reservation_id=rid)) == 1

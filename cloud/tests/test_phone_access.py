"""Who sees and changes what on the phone site, against a real `kagi cloud serve` (SPEC P-WEB-1,
P-WEB-5, C-DRV-1): a member ID gets the member's view and cannot reserve; another driver's
reservation answers as if it did not exist, and its forms change nothing; a form without its
CSRF token changes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cloud.tests.phone_help import (
    JST,
    Client,
    book,
    database,
    log_in,
    sent_commands,
)
from cloud.tests.sites import START, Site

DAY = dt.date(2027, 4, 9)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute), JST)


@pytest.fixture(scope="module")
def bobs(site: Site) -> str:
    """A reservation of Bob's (driver of member XXY00001, not its admin)."""
    with database(site) as db:
        return db.create_reservation(
            car_id="car-001", driver_id="XXY00001002", start=at(10), end=at(12), buffer_minutes=30
        ).reservation_id


def test_a_member_id_sees_its_drivers_reservations_and_cannot_reserve(
    site: Site, phone: Any, bobs: str
) -> None:
    """P-WEB-1, C-DRV-1: the member's view lists its drivers' reservations, offers no booking,
    and a booking tried anyway is refused in the rule's words; nothing is reserved."""
    site.set_time(START)
    page = log_in(site, phone, "XXY00001")
    assert page.has("member-view")
    assert page.has(f"reservation-{bobs}")
    assert not page.has("nav-book")
    page.open(f"/reservations/{bobs}")
    assert not page.has("op-start"), "a member ID operates no car"
    book(page, "car-002", at(14), at(15))
    assert page.data("quote-refused", "code") == "not_a_driver"
    assert "会員IDでは予約" in page.text("refusal")
    assert not page.has("reserve")
    member = Client(site, "XXY00001")
    try:
        forced = member.post(
            "/reserve",
            {"car_id": "car-002", "start_day": DAY.isoformat(), "start": "14:00",
             "end_day": DAY.isoformat(), "end": "15:00"},
        )  # fmt: skip
        assert forced.status_code == 403
        assert "会員IDでは予約" in forced.text
    finally:
        member.close()
    with database(site) as db:
        assert not db.list_reservations(car_id="car-002")


def test_another_drivers_reservation_answers_as_if_it_did_not_exist(
    site: Site, phone: Any, bobs: str
) -> None:
    """P-WEB-5: Carol (another member) and Bob's fellow driver who is not him both get "not
    found" for Bob's reservation, its change, cancel and damage forms, and its controls; their
    POSTs change and send nothing. The member's admin driver sees it."""
    site.set_time(START)
    page = log_in(site, phone, "XXY00002001")
    page.open(f"/reservations/{bobs}")
    assert page.data("error", "code") == "not_found"
    assert "見つかりません" in page.text("error")
    assert not page.has("reservation")
    for who in ("XXY00002001", "XXY00001001"):
        client = Client(site, who)
        try:
            if who == "XXY00001001":  # the admin of Bob's member sees it (guide's rule)
                assert client.http.get(f"/reservations/{bobs}").status_code == 200
                continue
            for path in ("", "/change", "/cancel", "/damage"):
                assert client.http.get(f"/reservations/{bobs}{path}").status_code == 404, path
            posts = {
                "/cancel": {"fee": "0", "accept": "yes"},
                "/change": {"start_day": DAY.isoformat(), "start": "11:00",
                            "end_day": DAY.isoformat(), "end": "13:00"},
                "/extend": {},
                "/operations/start": {"nonce": "0" * 32},
                "/damage": {"kind": "dirt", "note": "someone else's"},
            }  # fmt: skip
            for path, data in posts.items():
                answer = client.post(f"/reservations/{bobs}{path}", data)
                assert answer.status_code == 404, path
                assert "見つかりません" in answer.text
        finally:
            client.close()
    with database(site) as db:
        row = db.get_reservation(bobs)
        assert (row.status, row.start, row.change_count) == ("reserved", at(10), 0)
        assert not db.list_damage_reports(reservation_id=bobs)
    assert sent_commands(site) == 0


def test_a_form_without_its_csrf_token_changes_nothing(site: Site, bobs: str) -> None:
    """P-WEB-5: another site's page posting with the driver's cookie but without the token:
    no reservation, no cancellation, no command, no new e-mail address."""
    site.set_time(START)
    bob = Client(site, "XXY00001002")
    try:
        forged = {
            "/reserve": {"car_id": "car-003", "start_day": DAY.isoformat(), "start": "14:00",
                         "end_day": DAY.isoformat(), "end": "15:00"},
            f"/reservations/{bobs}/cancel": {"fee": "0", "accept": "yes"},
            f"/reservations/{bobs}/operations/start": {"nonce": "1" * 32},
            "/account/email": {"email": "mallory@example.com"},
            "/account/apply": {"address": "somewhere"},
        }  # fmt: skip
        for path, data in forged.items():
            answer = bob.http.post(path, data=data)
            assert answer.status_code == 403, path
            assert "セキュリティトークン" in answer.text
        wrong = bob.http.post("/reserve", data={**forged["/reserve"], "csrf": "0" * 64})
        assert wrong.status_code == 403
    finally:
        bob.close()
    with database(site) as db:
        assert not db.list_reservations(car_id="car-003")
        assert db.get_reservation(bobs).status == "reserved"
        assert db.get_driver("XXY00001002").email == "bob@example.jp"
        assert not db.list_change_applications()
    assert sent_commands(site) == 0

"""The phone site's booking, in headless Chromium at 360 px against a real `kagi cloud serve`
(SPEC P-WEB-2): the day's free and taken slots, the quote with its packs (F-TIME-1), reserving,
a refusal naming the rule with the next free time (C-CAR-1), changing with the changes left
(C-CHG-1), cancelling with the fee shown and accepted first (C-CAN-1, F-CAN-1), extending
during the trip (C-EXT-1)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cloud.tests.phone_help import (
    DOCS,
    JST,
    book,
    database,
    log_in,
    reserve,
    set_value,
)
from cloud.tests.sites import START, Site

DAY = dt.date(2027, 4, 7)  # a Wednesday two days after the site's Monday morning


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), JST)


def test_a_driver_reserves_from_the_day_grid_and_finds_it_in_my_reservations(
    site: Site, phone: Any
) -> None:
    """P-WEB-2, F-TIME-1, C-CAR-1: the quote shows the time fee with its packs (3 h 15 min is a
    3 h pack and one 15-minute unit, not 13 units); the reservation is on the home page; the
    day's grid shows its slots taken and the 30 minutes around it kept free."""
    site.set_time(START)
    page = log_in(site, phone, "XXY00001002")
    book(page, "car-002", at(DAY, 10), at(DAY, 13, 15))
    assert page.has("quote-ok")
    assert page.text("quote-fee") == "¥1,650"
    breakdown = page.text("quote-breakdown")
    assert "3時間パック × 1" in breakdown and "¥1,500" in breakdown
    assert "15分 × 1" in breakdown and "¥150" in breakdown
    assert page.fits_width()
    page.click("reserve")
    page.until(lambda: page.path.startswith("/reservations/"), "the reservation's page")
    page.shows("notice", "予約しました")
    rid = page.data("reservation", "id")
    assert page.data("reservation", "status") == "reserved"
    assert "2027-04-07 10:00 – 2027-04-07 13:15" in page.text("times")

    page.click("nav-home")
    page.until(lambda: page.has(f"reservation-{rid}"), "the reservation in my reservations")
    assert "car-002" in page.text(f"reservation-{rid}")

    page.open(f"/book?day={DAY.isoformat()}")
    assert page.data("slot-car-002-1000", "state") == "taken"
    assert page.data("slot-car-002-1300", "state") == "taken"
    assert page.data("slot-car-002-0930", "state") == "buffer"
    assert page.data("slot-car-002-1330", "state") == "buffer"
    assert page.data("slot-car-002-1345", "state") == "free"
    assert page.data("slot-car-001-1000", "state") == "free"
    assert "10:00–13:15" in page.text("taken-car-002")
    assert page.fits_width()
    page.screenshot(DOCS / "phone.png")


def test_a_refused_reservation_names_the_rule_and_the_next_free_time(
    site: Site, phone: Any
) -> None:
    """P-WEB-2, C-CAR-1: a booking too close to another on the same car is refused in the
    driver's words, in Japanese and in English, with the next time the car is free as long;
    that time can be booked."""
    site.set_time(START)
    with database(site) as db:
        db.create_reservation(
            car_id="car-003", driver_id="XXY00002001", start=at(DAY, 10), end=at(DAY, 12),
            buffer_minutes=30,
        )  # fmt: skip
    page = log_in(site, phone, "XXY00001001")
    book(page, "car-003", at(DAY, 12), at(DAY, 13))
    assert page.has("quote-refused") and not page.has("reserve")
    assert page.data("quote-refused", "code") == "car_buffer"
    assert "前後30分は予約できません" in page.text("refusal")
    page.shows("quote-next", "2027-04-07 12:30")
    phone.get(page.el("quote-next-link").get_attribute("href") + "&lang=en")
    page.until(lambda: page.has("quote-ok"), "the later time accepted")
    assert "2027-04-07 12:30 – 2027-04-07 13:30" in page.text("quote-span")

    book(page, "car-003", at(DAY, 11), at(DAY, 12))
    assert "The car is taken" in page.text("refusal")
    assert "12:30" in page.text("quote-next")


def test_a_change_shows_how_many_changes_are_left_until_none(site: Site, phone: Any) -> None:
    """P-WEB-2, C-CHG-1: the reservation's page and the change form say how many changes are
    left; after two changes a third is refused, naming the rule."""
    site.set_time(START)
    day = dt.date(2027, 4, 8)
    page = log_in(site, phone, "XXY00001002")
    rid = reserve(page, "car-003", at(day, 10), at(day, 12))
    assert "あと 2 回" in page.text("changes-left")
    for n, (start, end) in enumerate([("10:30", "12:30"), ("11:00", "13:00")]):
        page.click("change-link")
        page.until(lambda: page.has("change-form"), "the change form")
        assert f"あと {2 - n} 回" in page.text("changes-left")
        page.choose("change-start", start)
        page.choose("change-end", end)
        page.click("change-save")
        page.until(lambda: page.path == f"/reservations/{rid}", "the reservation's page")
        page.shows("notice", "予約を変更しました")
        assert f"{start} – 2027-04-08 {end}" in page.text("times")
        assert f"あと {1 - n} 回" in page.text("changes-left")
    page.click("change-link")
    page.until(lambda: page.has("change-form"), "the change form")
    page.choose("change-start", "12:00")
    page.choose("change-end", "14:00")
    page.click("change-save")
    page.shows("error", "予約の変更は2回までです")
    page.open(f"/reservations/{rid}")
    assert "11:00 – 2027-04-08 13:00" in page.text("times"), "nothing was changed"


def test_cancelling_shows_the_fee_first_and_needs_it_accepted(site: Site, phone: Any) -> None:
    """P-WEB-2, C-CAN-1, F-CAN-1: less than 60 minutes before the start a cancellation costs
    half the time fee; the page shows it before anything is cancelled; without accepting it, or
    with another fee than the one now due, nothing is cancelled."""
    site.set_time(START)  # 09:00
    page = log_in(site, phone, "XXY00001002")
    rid = reserve(page, "car-001", at(START.date(), 9, 45), at(START.date(), 11, 45))
    assert page.text("fee") == "¥1,200"
    page.click("cancel-link")
    page.until(lambda: page.has("cancel-fee"), "the cancellation fee")
    assert "¥600" in page.text("cancel-fee")
    assert page.data("cancel-fee", "fee") == "600"

    page.driver.execute_script("document.getElementById('cancel-accept').required = false")
    page.click("cancel-confirm")
    page.shows("error", "キャンセル料への同意が必要です")

    page.driver.execute_script("document.querySelector('input[name=fee]').value = '0'")
    page.click("cancel-accept")
    page.click("cancel-confirm")
    page.shows("error", "キャンセル料は現在 600円です")
    page.open(f"/reservations/{rid}")
    assert page.data("reservation", "status") == "reserved", "not cancelled at another fee"

    page.click("cancel-link")
    page.until(lambda: page.has("cancel-accept"), "the cancellation form")
    page.click("cancel-accept")
    page.click("cancel-confirm")
    page.until(lambda: page.path == f"/reservations/{rid}", "the reservation's page")
    page.shows("notice", "予約を取り消しました")
    assert page.data("reservation", "status") == "cancelled"
    assert "600" in page.text("cancellation-fee")


def test_a_trip_is_extended_by_a_step_or_to_a_later_mark_at_most_twice(
    site: Site, phone: Any
) -> None:
    """P-WEB-2, C-EXT-1: during the trip the end moves by 15 minutes or to a chosen later mark;
    the page counts the extensions left; a third is refused, naming the rule."""
    day = dt.date(2027, 4, 12)
    site.set_time(START)
    page = log_in(site, phone, "XXY00002001")
    rid = reserve(page, "car-001", at(day, 10), at(day, 11))
    assert not page.has("extend-step"), "no extension before the trip"
    with database(site) as db:
        db.start_trip(rid, started_at=at(day, 10, 2), started_by="card")
    site.set_time(at(day, 10, 30))
    page = log_in(site, phone, "XXY00002001")  # a week later: the session has expired
    page.open(f"/reservations/{rid}")
    assert page.data("reservation", "status") == "in_use"
    assert "あと 2 回" in page.text("extensions-left")
    page.click("extend-step")
    page.shows("notice", "延長しました")
    assert "2027-04-12 11:15" in page.text("times")
    assert "あと 1 回" in page.text("extensions-left")
    set_value(page, "extend-end", "12:00")
    page.click("extend-to")
    page.shows("notice", "延長しました")
    assert "2027-04-12 12:00" in page.text("times")
    assert "あと 0 回" in page.text("extensions-left")
    page.click("extend-step")
    page.shows("error", "延長は2回までです")
    assert "2027-04-12 12:00" in page.text("times")

"""The service's two faces on a real car: a driver reserves on the phone site in Chromium, the
car holds the reservation, the card opens it, the phone shows the trip, and the operator's
console, open in another browser, shows the car unlocked within 2 s."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.demo import CAR, DEMO_PASSWORD
from cloud.tests.console_help import desktop_driver, fleet_cell, staff_log_in
from cloud.tests.phone_help import JST, enter, phone_driver
from cloud.tests.phone_help import reserve as reserve_on_phone
from hil_tests.steps import BOB, SCENARIO, advance_to
from tools.rig import browser as web
from tools.rig.car import Rig
from tools.rig.phone import next_mark

pytestmark = pytest.mark.needs(*SCENARIO)

MIN = dt.timedelta(minutes=1)


@pytest.fixture
def phone() -> Iterator[Any]:
    with phone_driver() as driver:
        yield driver


@pytest.fixture
def desktop() -> Iterator[Any]:
    with desktop_driver() as driver:
        yield driver


def test_reserved_on_the_phone_site_the_car_holds_it_and_the_card_opens_it(
    rig: Rig, phone: Any, desktop: Any
) -> None:
    """P-WEB-2, S-SYNC-1, U-START-1, P-WEB-4, O-FLEET-1: reserved in the browser; the car holds
    the reservation; Bob's card opens the car in its window; the phone shows the trip in use;
    the console's fleet page shows the car unlocked within 2 s, by itself."""
    rig.park()
    page = web.Page(phone, rig.api_url)
    enter(page, BOB, DEMO_PASSWORD)
    start = next_mark(rig.now.astimezone(JST) + 30 * MIN)
    rid = reserve_on_phone(page, CAR, start, start + 120 * MIN)

    rig.wait_bookings(lambda rs: any(r["id"] == rid for r in rs), f"reservation {rid}")
    advance_to(rig, start)
    console = web.Page(desktop, rig.api_url)
    staff_log_in(console, "ops")
    console.until(lambda: console.el("live").is_displayed(), "the live fleet page")
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "unlocked"
    rig.wait_since(mark, "hazard ×2 and the unlock", unlocks=1, hazard_blinks=2)
    console.until(
        lambda: fleet_cell(console, CAR, "trip_state") == "unlocked", "the car unlocked", 2.0
    )
    assert fleet_cell(console, CAR, "doors") == "unlocked"

    page.open(f"/reservations/{rid}")
    page.until(lambda: page.data("reservation", "status") == "in_use", "the trip in use")

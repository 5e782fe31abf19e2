"""The operator console on a whole car (SPEC O-CAR-1, X-SAFE-1): the operator, on the car's page
in Chromium, immobilises it — refused while the engine runs, accepted once it stops — releases
it, and ends the trip for a driver who lost the key; each button shows the car's one result, the
car does it, and the timeline (and its CSV) has every event with car time and cloud time."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.demo import CAR, STAFF_PASSWORD
from cloud.tests.console_help import StaffClient, desktop_driver, staff_log_in
from cloud.tests.phone_help import DOCS
from hil_tests.steps import (
    BOB,
    SCENARIO,
    advance_to,
    get_in_and_drive,
    reserve,
    wait_event,
    wait_immobilised,
)
from tools.rig import browser as web
from tools.rig.car import Rig

pytestmark = pytest.mark.needs(*SCENARIO)


@pytest.fixture
def desktop() -> Iterator[Any]:
    with desktop_driver() as driver:
        yield driver


def press(page: web.Page, button: str) -> tuple[bool, str]:
    """Press a command button on the car's page; the result it shows (ok, code)."""
    page.click(f"cmd-{button}")
    page.until(lambda: page.data("result", "button") == button, f"the result of {button}")
    return page.data("result", "ok") == "1", page.data("result", "code")


def test_the_operator_immobilises_releases_and_ends_a_trip_from_the_car_page(
    rig: Rig, desktop: Any
) -> None:
    rig.park()
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start)
    assert rig.tap(BOB)["state"] == "unlocked"
    get_in_and_drive(rig, km=3.0)

    page = web.Page(desktop, rig.api_url)
    staff_log_in(page, "ops")
    page.open(f"/console/cars/{CAR}")
    page.until(lambda: page.data("car", "state") == "in_use", "the car in use")

    assert press(page, "immobilise") == (False, "engine_running")  # X-SAFE-1
    assert rig.outputs["immobilised"] is False
    rig.engine(False)
    assert press(page, "immobilise") == (True, "immobilised")
    wait_immobilised(rig, True)
    assert press(page, "release") == (True, "released")
    wait_immobilised(rig, False)

    rig.brake(True)  # the key is lost: the operator ends the trip for Bob
    rig.open_door("driver")
    rig.close_door("driver")
    assert press(page, "operator_end") == (True, "ended")
    assert rig.outputs["state"] == "forgotten_item_window"

    (ended,) = wait_event(rig, "trip_ended")
    assert ended["data"]["by"] == "operator"
    wait_event(rig, "command_result", 4)
    page.open(f"/console/cars/{CAR}")
    page.shows("events", "trip_ended")
    page.screenshot(DOCS / "console-car.png")

    ops = StaffClient(rig.api_url, "ops")
    exported = ops.http.get(f"/console/cars/{CAR}/events.csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    results = [json.loads(r["data"]) for r in rows if r["type"] == "command_result"]
    assert [(r["name"], r["code"]) for r in results] == [
        ("immobilise", "engine_running"),
        ("immobilise", "immobilised"),
        ("release", "released"),
        ("operator_end", "ended"),
    ]
    assert all(r["car_time"] and r["cloud_time"] for r in rows)
    assert any(r["type"] == "trip_ended" for r in rows)

    token = ops.http.post("/v1/console/login", json={"staff_id": "ops", "password": STAFF_PASSWORD})
    auth = {"authorization": f"Bearer {token.json()['token']}"}
    log = [
        (e["action"], e["result"]) for e in ops.http.get("/v1/console/audit", headers=auth).json()
    ]
    assert ("command:immobilise", "refused:engine_running") in log
    assert ("command:operator_end", "ok:ended") in log
    ops.close()


def test_a_car_left_unopened_locks_itself_and_the_console_alerts_the_operator(
    rig: Rig, desktop: Any
) -> None:
    """O-ALERT-1, U-SEC-1: unlocked and no door opened for a minute: the car locks itself; the
    alert is on the console's alerts page, with the car; the operator acknowledges it."""
    rig.park()
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start)
    assert rig.tap(BOB)["state"] == "unlocked"
    rig.advance(minutes=1, seconds=5)
    (locked,) = wait_event(rig, "security_locked")
    assert "alert raised" in locked["outcome"]

    page = web.Page(desktop, rig.api_url)
    staff_log_in(page, "ops")
    page.open("/console/alerts")
    page.until(lambda: page.has("alerts"), "the alerts")
    rows = desktop.find_elements(page.by.CSS_SELECTOR, "#alerts tr[data-kind=security_locked]")
    assert len(rows) == 1 and CAR in rows[0].text
    alert_id = str(rows[0].get_attribute("id")).removeprefix("alert-")
    page.click(f"ack-{alert_id}")
    page.until(lambda: page.has("no-alerts"), "no open alert left")

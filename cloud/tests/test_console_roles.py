"""Who may do what on the console, against a real `kagi cloud serve` (SPEC O-ROLE-1, P-WEB-5):
a viewer reads and is refused every change; a technician sees their one car and may only put it
into service mode or run its self-test, only inside their window; every action and refusal is in
the audit log; a change without the CSRF token is refused; a staff token opens neither the
drivers' API nor the phone site, and a driver's token not the console; wrong passwords are
slowed down; an operator adds and disables staff."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from typing import Any

import httpx
import pytest

from cloud.demo import DEMO_PASSWORD, STAFF_PASSWORD
from cloud.tests.console_help import StaffClient, add_technician, staff_log_in
from cloud.tests.phone_help import database
from cloud.tests.sites import START, Site
from tools.rig import browser as web


@pytest.fixture(scope="module")
def site_args() -> tuple[str, ...]:
    return ("--command-timeout", "0.5")  # no car answers here


def audit(site: Site) -> list[tuple[str, str, str, str]]:
    with database(site) as store:
        return [(e.staff_id, e.action, e.target, e.result) for e in store.list_audit()]


def test_a_viewer_reads_everything_and_changes_nothing(site: Site, desktop: Any) -> None:
    """O-ROLE-1: the viewer sees the fleet and a car's page without a command button; a forged
    command POST is refused 403 and nothing is sent; the refusal is in the audit log."""
    page = web.Page(desktop, site.url)
    staff_log_in(page, "viewer")
    page.until(lambda: page.path == "/console/", "the fleet page")
    page.open("/console/cars/car-002")
    page.until(lambda: page.has("events"), "the car's page")
    assert not page.has("cmd-lock") and not page.has("cmd-unlock")

    viewer = StaffClient(site.url, "viewer")
    refused = viewer.post("/console/cars/car-002/commands/unlock")
    assert refused.status_code == 403
    assert 'data-code="not_permitted"' in refused.text
    assert viewer.post("/console/alerts/1/acknowledge").status_code == 403
    new = {"staff_id": "x", "name": "X", "role": "operator", "password": "long-enough"}
    assert viewer.post("/console/staff", new).status_code == 403
    with database(site) as store:
        assert store.car_events("car-002") == []
        assert [s.staff_id for s in store.list_staff()] == ["ops", "viewer"]
    assert ("viewer", "command:unlock", "car-002", "refused:not_permitted") in audit(site)
    viewer.close()


def test_a_technician_has_one_car_for_one_window(site: Site, desktop: Any) -> None:
    """O-ROLE-1: inside the window the technician lands on their car, with only the service mode
    and self-test buttons; another car, the fleet's API and an operator command are refused;
    before the window starts and after it ends, their car is refused too."""
    add_technician(site, "tech-now", "car-002", START - dt.timedelta(hours=1),
                   START + dt.timedelta(hours=2))  # fmt: skip
    add_technician(site, "tech-later", "car-002", START + dt.timedelta(days=1),
                   START + dt.timedelta(days=1, hours=2))  # fmt: skip
    page = web.Page(desktop, site.url)
    staff_log_in(page, "tech-now")
    page.until(lambda: page.path == "/console/cars/car-002", "their car's page")
    buttons = {e.get_attribute("id") for e in desktop.find_elements(page.by.CSS_SELECTOR,
                                                                     "[id^=cmd-]")}  # fmt: skip
    assert buttons == {"cmd-service_mode_on", "cmd-service_mode_off", "cmd-self_test"}
    assert not page.has("nav-fleet")

    tech = StaffClient(site.url, "tech-now")
    assert 'data-code="not_your_car"' in tech.http.get("/console/cars/car-001").text
    assert tech.post("/console/cars/car-002/commands/unlock").status_code == 403
    assert tech.http.get("/console/audit").status_code == 403
    # inside the window, a service-mode command goes to the car (none answers here)
    sent = tech.post("/console/cars/car-002/commands/self_test")
    assert sent.status_code == 200 and 'data-code="car_timeout"' in sent.text

    later = StaffClient(site.url, "tech-later")
    early = later.http.get("/console/cars/car-002")
    assert early.status_code == 403 and 'data-code="outside_window"' in early.text
    site.set_time(START + dt.timedelta(hours=3))  # tech-now's window is over
    try:
        late = tech.post("/console/cars/car-002/commands/service_mode_on")
        assert late.status_code == 403 and 'data-code="outside_window"' in late.text
    finally:
        site.set_time(START)
    log = audit(site)
    assert ("tech-now", "command:self_test", "car-002", "car_timeout") in log
    assert ("tech-now", "car", "car-001", "refused:not_your_car") in log
    assert ("tech-later", "car", "car-002", "refused:outside_window") in log
    assert ("tech-now", "command:service_mode", "car-002", "refused:outside_window") in log
    tech.close()
    later.close()


def test_changes_without_the_csrf_token_are_refused(site: Site) -> None:
    """P-WEB-5 on the console: a command, an acknowledgement, a new staff account without the
    form's token: 403, nothing done."""
    ops = StaffClient(site.url, "ops")
    before = audit(site)
    for path, data in (
        ("/console/cars/car-001/commands/unlock", {}),
        ("/console/staff", {"staff_id": "y", "name": "Y", "role": "operator",
                            "password": "long-enough"}),
    ):  # fmt: skip
        refused = ops.http.post(path, data=data)
        assert refused.status_code == 403, path
        assert 'data-code="csrf"' in refused.text
    assert audit(site) == before
    ops.close()


def test_staff_and_driver_tokens_open_only_their_own_side(site: Site) -> None:
    """A staff token is refused by the drivers' API and its session by the phone site; a
    driver's token is refused by the console's API."""
    api = httpx.Client(base_url=site.url, timeout=30)
    staff = api.post("/v1/console/login", json={"staff_id": "ops", "password": STAFF_PASSWORD})
    assert staff.status_code == 200
    staff_auth = {"authorization": f"Bearer {staff.json()['token']}"}
    assert api.get("/v1/console/fleet", headers=staff_auth).status_code == 200
    refused = api.get("/v1/reservations", headers=staff_auth)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "not_a_driver_token"

    driver = api.post("/v1/login", json={"account_id": "XXY00001002", "password": DEMO_PASSWORD})
    driver_auth = {"authorization": f"Bearer {driver.json()['token']}"}
    refused = api.get("/v1/console/fleet", headers=driver_auth)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "not_a_staff_token"

    ops = StaffClient(site.url, "ops")  # the console's cookie does not open the phone site
    home = ops.http.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/login"
    api.close()
    ops.close()


def test_wrong_staff_passwords_are_slowed_down(site: Site) -> None:
    """P-WEB-5 on the console: after repeated wrong passwords the login answers 429, even with
    the right one, until the wait is over."""
    api = httpx.Client(base_url=site.url, timeout=30)
    codes = [
        api.post(
            "/v1/console/login", json={"staff_id": "viewer", "password": f"wrong-{i}"}
        ).status_code
        for i in range(8)
    ]
    assert codes[0] == 401 and 429 in codes
    right = api.post("/v1/console/login", json={"staff_id": "viewer", "password": STAFF_PASSWORD})
    assert right.status_code == 429
    assert right.json()["error"]["retry_after"] > 0
    api.close()


def test_an_operator_adds_and_disables_staff_on_the_console(site: Site, desktop: Any) -> None:
    """O-ROLE-1: the staff page adds a viewer; once disabled, their open session is refused at
    the next page; both changes are in the audit log, which nobody can edit."""
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.until(lambda: page.path == "/console/", "the fleet page")
    page.open("/console/staff")
    page.type("new-staff-id", "hanako")
    page.type("new-staff-name", "Hanako Suzuki")
    page.choose("new-staff-role", "viewer")
    page.type("new-staff-password", "hanakos-password")
    page.click("add-staff-submit")
    page.until(lambda: page.has("staff-hanako"), "the new account")

    hanako = StaffClient(site.url, "hanako", "hanakos-password")
    assert hanako.http.get("/console/").status_code == 200
    page.click("disable-hanako")
    page.until(lambda: page.has("enable-hanako"), "the account disabled")
    gone = hanako.http.get("/console/")
    assert gone.status_code == 303 and gone.headers["location"] == "/console/login"

    log = audit(site)
    assert ("ops", "add_staff", "hanako", "ok") in log
    assert ("ops", "disable_staff", "hanako", "ok") in log
    page.open("/console/audit")
    page.shows("audit", "disable_staff")
    with contextlib.closing(sqlite3.connect(site.db)) as raw:
        with pytest.raises(sqlite3.DatabaseError, match="cannot be edited"):
            raw.execute("UPDATE audit_log SET result = 'ok'")
        with pytest.raises(sqlite3.DatabaseError, match="cannot be edited"):
            raw.execute("DELETE FROM audit_log")
    hanako.close()

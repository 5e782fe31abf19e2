"""The console's fleet page in headless Chromium against a real `kagi cloud serve` (SPEC
O-FLEET-1): every car with its station and last reports; a car's report changes its row within
2 s with no reload; the filters by station, state and offline, kept live."""

from __future__ import annotations

from typing import Any

from cloud.tests.console_help import fleet_cell, staff_log_in
from cloud.tests.phone_help import DOCS, database
from cloud.tests.sites import Site
from tools.rig import browser as web

AWAY = {"lat": 36.4500, "lon": 140.6065}  # ~380 m north of Tokai station 1


def report(site: Site, car: str, at: float, **state: Any) -> None:
    """What the cloud keeps of a car's `state` report (S-SYNC-4), as its sync would."""
    body = {
        "trip_state": "idle",
        "doors": "locked",
        "doors_open": {"driver": False},
        "key_present": True,
        "parking_brake": True,
        "engine_running": False,
        "fuel_pct": 80.0,
        "odometer_km": 1200.0,
        "position": {"lat": 36.4466, "lon": 140.6065},
        "firmware": "0.9.0",
        **state,
    }
    with database(site) as store:
        assert store.set_car_state(car, at, body)
        assert store.set_car_online(car, True, at)


def cell(page: web.Page, car: str, name: str) -> str:
    return str(
        page.driver.find_element(page.by.CSS_SELECTOR, f'#car-{car} [data-cell="{name}"]').text
    )


def shown(page: web.Page) -> list[str]:
    rows = page.driver.find_elements(page.by.CSS_SELECTOR, "#fleet tbody tr")
    return [r.get_attribute("data-car") for r in rows if r.is_displayed()]


def test_the_fleet_page_lists_every_car_and_follows_a_report_within_2_s(
    site: Site, desktop: Any
) -> None:
    """O-FLEET-1: the row of a car that reports changes by itself within 2 s, no reload."""
    report(site, "car-001", 1000.0)
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.until(lambda: page.path == "/console/", "the fleet page")
    assert shown(page) == ["car-001", "car-002", "car-003"]
    assert fleet_cell(page, "car-001", "trip_state") == "idle"
    assert fleet_cell(page, "car-001", "position").startswith("at station")
    assert fleet_cell(page, "car-001", "firmware") == "0.9.0"
    assert fleet_cell(page, "car-001", "online") == "online"
    assert fleet_cell(page, "car-002", "online") == "offline"  # never heard of
    page.until(lambda: page.el("live").is_displayed(), "the live mark")
    desktop.execute_script("window.notReloaded = true")

    report(site, "car-001", 1001.0, trip_state="in_use", doors="unlocked", key_present=False,
           parking_brake=False, engine_running=True, fuel_pct=62.4, position=AWAY)  # fmt: skip
    page.until(lambda: fleet_cell(page, "car-001", "trip_state") == "in use", "car-001 in use", 2.0)
    assert fleet_cell(page, "car-001", "doors") == "unlocked"
    assert fleet_cell(page, "car-001", "key") == "no"
    assert fleet_cell(page, "car-001", "engine") == "on"
    assert fleet_cell(page, "car-001", "fuel") == "62 %"
    assert fleet_cell(page, "car-001", "position").startswith("away")
    assert desktop.execute_script("return window.notReloaded") is True, "updated without reload"
    page.screenshot(DOCS / "console.png")


def test_the_filters_keep_to_what_was_asked_as_cars_report(site: Site, desktop: Any) -> None:
    """O-FLEET-1: by station, by state (a car that comes to match appears, one that stops
    matching goes), offline only."""
    report(site, "car-002", 2000.0)
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.until(lambda: page.path == "/console/", "the fleet page")

    page.choose("filter-station", "tokai-2")
    page.click("filter")
    page.until(lambda: shown(page) == ["car-003"], "only Tokai station 2's car")

    page.open("/console/?state=security_locked")
    page.until(lambda: page.el("live").is_displayed(), "the live mark")
    assert shown(page) == []
    assert page.text("count-n") == "0"
    report(site, "car-002", 2001.0, trip_state="security_locked")
    page.until(lambda: shown(page) == ["car-002"], "car-002 appearing, security locked", 2.0)
    assert page.text("count-n") == "1"
    report(site, "car-002", 2002.0, trip_state="idle")
    page.until(lambda: shown(page) == [], "car-002 gone again", 2.0)

    page.open("/console/?offline=1")
    page.until(lambda: "car-003" in shown(page), "the offline cars")
    assert "car-002" not in shown(page)
    with database(site) as store:
        store.set_car_online("car-002", False, None)  # its last will: the link dropped
    page.until(lambda: "car-002" in shown(page), "car-002 offline", 2.0)

    page.open("/console/?state=flying")
    page.shows("error", "state")


def test_a_cars_page_follows_its_car_and_no_other(site: Site, desktop: Any) -> None:
    """O-CAR-1: the state row of a car's page changes by itself when that car reports; another
    car's report does not touch it."""
    report(site, "car-001", 3000.0)
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.open("/console/cars/car-001")
    assert page.data("car", "state") == "idle"
    page.until(lambda: page.el("live").is_displayed(), "the live mark")
    desktop.execute_script("window.notReloaded = true")

    report(site, "car-002", 3001.0, trip_state="security_locked")
    report(site, "car-001", 3002.0, trip_state="in_use", engine_running=True, fuel_pct=55.0)
    page.until(lambda: page.data("car", "state") == "in_use", "car-001 in use", 2.0)
    assert cell(page, "car-001", "engine") == "on"
    assert cell(page, "car-001", "fuel") == "55 %"
    assert desktop.execute_script("return window.notReloaded") is True, "updated without reload"

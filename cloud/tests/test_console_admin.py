"""The console's admin page in headless Chromium against a real `kagi cloud serve` (SPEC
O-ADM-1, U-CARD-4, P-WEB-6, F-FUEL-1): the operator records refuels from glovebox receipts — a
qualifying one reaches the trip's invoice as a discount the driver sees on the phone, a small one
changes nothing, an emergency one paid by the driver is reimbursed without the discount —,
revokes a card at once, sets a licence expiry and decides a change application; a viewer sees
the page and is refused every change; bad input names what was wrong."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cloud import billing
from cloud.policy import default_policy
from cloud.tests.console_help import StaffClient, staff_log_in
from cloud.tests.phone_help import JST, database, log_in
from cloud.tests.sites import START, Site
from tools.rig import browser as web

BOB = "XXY00001002"


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(START.date(), dt.time(hour, minute), JST)


def returned_trip(site: Site) -> str:
    """A 2-hour trip of Bob's, returned and invoiced as the car's trip end would do."""
    with database(site) as db:
        rid = db.create_reservation(
            car_id="car-002", driver_id=BOB, start=at(10), end=at(12), buffer_minutes=30
        ).reservation_id
        db.start_trip(rid, started_at=at(10), odometer_km=1000.0)
        db.end_trip(rid, ended_at=at(11, 50), odometer_km=1030.0)
        bill = billing.trip_bill(db, default_policy(), rid)
        db.add_invoice("XXY00001", billing.bill_lines(bill), reservation_id=rid)
    return rid


def record(page: web.Page, rid: str, litres: str, yen: str, kind: str) -> str:
    page.open("/console/admin")
    page.type("refuel-reservation", rid)
    page.driver.execute_script(
        "document.getElementById('refuel-at').value = arguments[0]", "2027-04-05T11:00"
    )
    page.type("refuel-litres", litres)
    page.type("refuel-amount", yen)
    page.choose("refuel-kind", kind)
    page.click("refuel-submit")
    page.until(lambda: page.has("refuel-notice"), "the refuel recorded")
    return page.text("refuel-notice")


def totals(site: Site, rid: str) -> list[tuple[str, int]]:
    with database(site) as db:
        return [(str(line["code"]), int(line["yen"])) for i in db.list_invoices("XXY00001")
                if i.reservation_id == rid for line in i.lines]  # fmt: skip


def test_refuels_from_receipts_reach_the_trips_invoice(
    site: Site, desktop: Any, phone: Any
) -> None:
    site.set_time(at(13))
    rid = returned_trip(site)
    before = sum(yen for _, yen in totals(site, rid))
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.until(lambda: page.path == "/console/", "the fleet page")

    assert record(page, rid, "25.4", "4200", "receipt") == "Adjustment invoiced: -200 yen"
    assert record(page, rid, "8", "1300", "receipt") == "The invoice does not change"
    assert record(page, rid, "30", "5100", "emergency") == "Adjustment invoiced: -5100 yen"
    lines = totals(site, rid)
    assert ("refuel_receipt", -200) in lines and ("refuel_reimbursement", -5100) in lines
    assert sum(yen for _, yen in lines) == before - 200 - 5100
    rows = desktop.find_elements(page.by.CSS_SELECTOR, f"#refuels tr[data-reservation='{rid}']")
    assert [r.get_attribute("data-kind") for r in rows] == ["emergency", "receipt", "receipt"]
    assert all("ops" in r.text for r in rows)

    phone_page = log_in(site, phone, BOB)  # the driver sees it on the phone, line by line
    phone_page.open("/trips")
    phone_page.until(lambda: phone_page.has(f"invoice-{rid}"), "the trip's invoice")
    assert "-¥200" in phone_page.text(f"line-{rid}-refuel_receipt")
    assert "-¥5,100" in phone_page.text(f"line-{rid}-refuel_reimbursement")
    owed = before - 5300  # less than nothing: the operator pays Bob back
    assert phone_page.text(f"total-{rid}") == (f"¥{owed:,}" if owed >= 0 else f"-¥{-owed:,}")

    page.open("/console/admin")  # bad input: named, nothing recorded
    page.type("refuel-reservation", rid)
    page.driver.execute_script("document.getElementById('refuel-at').value = '2027-04-05T11:00'")
    page.type("refuel-litres", "lots")
    page.type("refuel-amount", "100")
    page.click("refuel-submit")
    page.shows("error", "litres")
    assert len(totals(site, rid)) == len(lines)


def test_cards_licences_and_applications_are_kept_on_the_admin_page(
    site: Site, desktop: Any
) -> None:
    with database(site) as db:
        application = db.add_change_application(
            "XXY00001001", {"licence_expiry": "2032-05-31"}, "renewed"
        )
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.until(lambda: page.path == "/console/", "the fleet page")
    page.open("/console/admin")
    page.click("revoke-XXY00002002")  # Dan's card: revoked at once (U-CARD-4)
    page.until(lambda: not page.has("revoke-XXY00002002"), "the card revoked")
    page.driver.execute_script(
        "document.getElementById('licence-XXY00001002').value = '2033-01-31'"
    )
    page.click("save-licence-XXY00001002")
    page.until(lambda: page.el("licence-XXY00001002").get_attribute("value") == "2033-01-31",
               "the new licence expiry")  # fmt: skip
    page.click(f"approve-{application.application_id}")
    page.until(lambda: not page.has(f"approve-{application.application_id}"), "decided")
    with database(site) as db:
        assert [c.active for c in db.list_cards(driver_id="XXY00002002")] == [False]
        assert db.get_driver("XXY00001002").licence_expiry == dt.date(2033, 1, 31)
        assert db.get_driver("XXY00001001").licence_expiry == dt.date(2032, 5, 31)
        log = [(e.action, e.target) for e in db.list_audit()]
    assert ("set_licence_expiry", "XXY00001002") in log
    assert ("approve_application", str(application.application_id)) in log

    viewer = StaffClient(site.url, "viewer")
    assert viewer.http.get("/console/admin").status_code == 200
    refused = viewer.post("/console/admin/drivers/XXY00001002/licence",
                          {"licence_expiry": "2040-01-01"})  # fmt: skip
    assert refused.status_code == 403
    with database(site) as db:
        assert db.get_driver("XXY00001002").licence_expiry == dt.date(2033, 1, 31)
        last = db.list_audit()[0]
    assert (last.staff_id, last.action, last.target, last.result) == (
        "viewer",
        "set_licence_expiry",
        "XXY00001002",
        "refused:not_permitted",
    )
    viewer.close()


def test_members_drivers_cards_penalties_and_mails_on_the_accounts_page(
    site: Site, desktop: Any
) -> None:
    """O-ADM-1, C-PEN-1, N-MAIL-1: a new member with a driver and a card registered from its
    IDm (kept as its keyed hash only); a member suspended and reinstated; a late return lifted
    so it no longer counts; a lost mail sent again."""
    with database(site) as db:
        rid = db.create_reservation(car_id="car-003", driver_id="XXY00002001", start=at(14),
                                    end=at(15), buffer_minutes=30).reservation_id  # fmt: skip
        db.start_trip(rid, started_at=at(14))
        db.end_trip(rid, ended_at=at(15, 45), unauthorised_extension=True)
        assert len(db.unauthorised_extensions("XXY00002")) == 1
        mail = db.list_notifications(reservation_id=rid)[0].notification_id
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.until(lambda: page.path == "/console/", "the fleet page")
    page.open("/console/admin/accounts")
    page.type("new-member-id", "XXY00003")
    page.type("new-member-name", "Sato Trading")
    page.click("add-member-submit")
    page.until(lambda: page.has("member-XXY00003"), "the new member")
    page.type("new-driver-id", "XXY00003001")
    page.type("new-driver-name", "Sato Ken")
    page.type("new-driver-email", "ken@sato.example.jp")
    page.click("add-driver-submit")
    page.until(lambda: page.has("new-card-idm"), "the page again")
    page.choose("new-card-driver", "XXY00003001")
    page.type("new-card-idm", "0123456789abcdef")
    page.click("add-card-submit")
    page.until(lambda: page.path == "/console/admin/accounts", "the page again")

    page.click("suspend-XXY00001")
    page.until(lambda: page.data("member-XXY00001", "status") == "suspended", "suspended")
    page.click("reinstate-XXY00001")
    page.until(lambda: page.data("member-XXY00001", "status") == "active", "reinstated")
    page.click(f"lift-{rid}")
    page.until(lambda: not page.has(f"lift-{rid}"), "the penalty lifted")
    page.click(f"resend-{mail}")
    page.until(lambda: page.has(f"resend-{mail + 1}") or len(desktop.find_elements(
        page.by.CSS_SELECTOR, "#mails tr")) > 1, "the copy queued")  # fmt: skip

    page.choose("new-card-driver", "XXY00003001")
    page.type("new-card-idm", "not-hex")  # bad input named, nothing kept
    page.click("add-card-submit")
    page.shows("error", "idm")
    with database(site) as db:
        (card,) = db.list_cards(driver_id="XXY00003001")
        assert "0123456789abcdef" not in card.card_hash
        assert db.get_member("XXY00001").status == "active"
        assert db.unauthorised_extensions("XXY00002") == ()
        copies = [n for n in db.list_notifications(reservation_id=rid) if n.sent_at is None]
        assert len(copies) >= 2
        log = {(e.action, e.target, e.result) for e in db.list_audit()}
    assert ("add_card", "XXY00003001", "ok") in log
    assert ("add_card", "XXY00003001", "refused:bad_idm") in log
    assert ("lift_penalty", rid, "ok") in log


def test_a_station_and_its_car_added_on_the_console_are_on_the_fleet_page(
    site: Site, desktop: Any
) -> None:
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.until(lambda: page.path == "/console/", "the fleet page")
    page.open("/console/admin/stations")
    page.type("new-station-id", "mito-1")
    page.type("new-station-name", "Mito station 1")
    page.type("new-station-lat", "36.3707")
    page.type("new-station-lon", "140.4763")
    page.click("add-station-submit")
    page.until(lambda: page.has("station-mito-1"), "the new station")
    page.choose("new-car-station", "mito-1")
    page.type("new-car-id", "car-101")
    page.click("add-car-submit")
    page.until(lambda: "car-101" in page.text("station-mito-1"), "its new car")
    page.open("/console/?station=mito-1")
    page.until(lambda: page.has("car-car-101"), "the car on the fleet page")

    page.open("/console/admin/stations")
    page.type("new-station-id", "mito-2")
    page.type("new-station-name", "Mito station 2")
    page.type("new-station-lat", "north")
    page.type("new-station-lon", "140.47")
    page.click("add-station-submit")
    page.shows("error", "lat")

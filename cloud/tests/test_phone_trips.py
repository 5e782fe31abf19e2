"""Past trips on the phone site, in headless Chromium at 360 px against a real `kagi cloud
serve` (SPEC P-WEB-3): a finished trip's invoice line by line — time, distance, overtime and
the unauthorised-extension charge, the fuel discount — and the penalty it brought (C-PEN-1)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from cloud import model
from cloud.fees import invoice
from cloud.policy import default_policy
from cloud.tests.phone_help import JST, database, log_in
from cloud.tests.sites import START, Site


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(START.date(), dt.time(hour, minute), JST)


def test_a_finished_trip_shows_its_invoice_line_by_line_and_the_penalty_in_force(
    site: Site, phone: Any
) -> None:
    """P-WEB-3, F-TIME-1, F-DIST-1, F-OVER-1, F-FUEL-1, C-PEN-1: a 2-hour trip returned 40
    minutes late without extending, 42 km, one 25-litre refuel with the fuel card: the invoice
    as the car's trip end made it, each line with its amount, and the limit to one open
    reservation next month."""
    site.set_time(at(13))
    page = log_in(site, phone, "XXY00001002")
    page.click("nav-trips")
    page.until(lambda: page.has("no-trips"), "no trips yet")
    assert page.has("no-penalties")
    with database(site) as db:  # what the car's trip_started and trip_ended record
        rid = db.create_reservation(
            car_id="car-001", driver_id="XXY00001002", start=at(10), end=at(12),
            buffer_minutes=30,
        ).reservation_id  # fmt: skip
        db.start_trip(rid, started_at=at(10), odometer_km=1000.0)
        db.add_refuel(rid, at=at(11), litres=25.0, fuel_card=True)
        db.end_trip(
            rid, ended_at=at(12, 40), odometer_km=1042.0, overtime_minutes=40,
            unauthorised_extension=True,
        )  # fmt: skip
        ended = db.get_reservation(rid)
        bill = invoice(
            default_policy(),
            model.car_from(db.get_car("car-001")),
            model.reservation_from(ended),
            distance_km=42.0,
            refuels=[model.refuel_from(r) for r in db.list_refuels(rid)],
        )
        db.add_invoice(
            "XXY00001", [dataclasses.asdict(line) for line in bill.lines], reservation_id=rid
        )
    page.open("/trips")
    page.until(lambda: page.has(f"invoice-{rid}"), "the trip's invoice")
    codes = [line.code for line in bill.lines]
    assert codes == ["time", "distance", "overtime", "penalty", "fuel_discount"]
    for line in bill.lines:
        shown = page.text(f"line-{rid}-{line.code}")
        yen = f"-¥{-line.yen:,}" if line.yen < 0 else f"¥{line.yen:,}"
        assert line.label_ja in shown and yen in shown, shown
    assert "¥1,200" in page.text(f"line-{rid}-time")
    assert "¥840" in page.text(f"line-{rid}-distance")
    assert "¥3,000" in page.text(f"line-{rid}-penalty")
    assert "-¥200" in page.text(f"line-{rid}-fuel_discount")
    assert page.text(f"total-{rid}") == f"¥{bill.total:,}"
    assert not page.has("no-penalties")
    limit = page.text("penalty-limit-1")
    assert "2027-05-01" in limit and "1 件まで" in limit
    assert "1 回" in page.text("penalty-count")
    assert page.fits_width()

    page.open("/trips?lang=en")
    assert "Unauthorised extension" in page.text(f"line-{rid}-penalty")
    assert "at most 1 open reservation" in page.text("penalty-limit-1")

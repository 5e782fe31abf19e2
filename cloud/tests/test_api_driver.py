"""The JSON API's damage reports and change applications (SPEC P-WEB-6, P-WEB-7), on both
store backends: the same rules and authorisation as the pages."""

from __future__ import annotations

import base64

from cloud.tests.test_api import ADMIN, BOB, OTHER, Phone, api, at, error, fleet  # noqa: F401

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 30


def test_a_damage_report_with_a_photo_lands_and_only_its_driver_reports_it(api):  # noqa: F811
    """P-WEB-7: a report with a base64 photo is kept with the reservation; text posing as a
    photo is refused (415); another member's driver gets 404, as for the reservation."""
    bob = Phone(api, BOB)
    rid = bob.reserve(at(24, 10), at(24, 12)).json()["id"]
    photo = base64.b64encode(PNG).decode()
    r = bob.call(
        "POST",
        "/v1/damage-reports",
        json={"reservation_id": rid, "kind": "damage", "note": "dent", "photos": [photo]},
    )
    assert r.status_code == 201, r.text
    report = r.json()
    assert (report["kind"], report["note"], report["car_id"]) == ("damage", "dent", "car-1")
    assert report["photos"][0]["content_type"] == "image/png"
    text = base64.b64encode(b"<html>not a photo</html>").decode()
    bad = bob.call(
        "POST", "/v1/damage-reports", json={"reservation_id": rid, "kind": "dirt", "photos": [text]}
    )
    assert bad.status_code == 415 and error(bad)["code"] == "not_an_image"
    other = Phone(api, OTHER)
    theirs = other.call(
        "POST", "/v1/damage-reports", json={"reservation_id": rid, "kind": "dirt", "note": "x"}
    )
    assert theirs.status_code == 404
    assert other.call("GET", f"/v1/reservations/{rid}/damage-reports").status_code == 404
    listed = bob.call("GET", f"/v1/reservations/{rid}/damage-reports").json()
    assert [x["id"] for x in listed] == [report["id"]]


def test_a_change_application_is_stored_for_the_operator(api):  # noqa: F811
    """P-WEB-6: pending, listed for its driver only; nothing to change is refused."""
    bob = Phone(api, BOB)
    r = bob.call("POST", "/v1/change-applications", json={"fields": {"address": "Tokai 1"}})
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["fields"]) == ("pending", {"address": "Tokai 1"})
    assert [a["id"] for a in bob.call("GET", "/v1/change-applications").json()] == [r.json()["id"]]
    assert Phone(api, ADMIN).call("GET", "/v1/change-applications").json() == []
    empty = bob.call("POST", "/v1/change-applications", json={"fields": {"password": "x"}})
    assert empty.status_code == 422 and error(empty)["code"] == "nothing_to_change"

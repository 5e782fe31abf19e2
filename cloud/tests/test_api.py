"""The phone site's API through real HTTP requests, on SQLite and on PostgreSQL.

The server runs on a thread on a loopback port; the test owns the clock (the store's and the
API's), so token expiry and the cancellation tiers are reached by moving it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cloud.auth import hash_password
from cloud.policy import default_policy
from cloud.server import ApiThread
from cloud.store import Store

JST = dt.timezone(dt.timedelta(hours=9))
MEMBER = "XXY00001"
ADMIN = "XXY00001001"  # admin driver of the member
BOB = "XXY00001002"  # plain driver of the member
OTHER = "ZZZ00009001"  # a driver of another member
CAR, CAR2 = "car-1", "car-2"
PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)  # once: scrypt is slow on purpose


def at(day: int, hour: int, minute: int = 0) -> str:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=JST).isoformat()


@pytest.fixture
def fleet(db: Store) -> Store:
    db.add_station("st-1", name="Station 1", lat=35.0, lon=139.0, radius_m=50)
    db.add_car(CAR, station_id="st-1", name="Fit")
    db.add_car(CAR2, station_id="st-1", name="Note")
    db.add_member(MEMBER, name="Example Co.")
    db.add_member("ZZZ00009", name="Other Co.")
    expiry = dt.date(2030, 1, 1)
    db.add_driver(ADMIN, name="Aki", email="a@example.jp", licence_expiry=expiry, is_admin=True)
    db.add_driver(BOB, name="Bob", email="b@example.jp", licence_expiry=expiry)
    db.add_driver(OTHER, name="Oz", email="o@example.jp", licence_expiry=expiry)
    for account in (MEMBER, ADMIN, BOB, OTHER):
        db.set_password_hash(account, PASSWORD_HASH)
    return db


@pytest.fixture
def api(fleet: Store, clock) -> Iterator[ApiThread]:
    # The clock fixture starts at 2026-11-23 09:00 UTC = 18:00 JST.
    with ApiThread(fleet, default_policy(), clock) as server:
        yield server


class Phone:
    """One person's phone: logs in, then calls the API with their token."""

    def __init__(self, api: ApiThread, account: str | None = None) -> None:
        self.http = httpx.Client(base_url=api.url, timeout=10)
        self.headers: dict[str, str] = {}
        if account:
            r = self.http.post("/v1/login", json={"account_id": account, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.headers = {"Authorization": f"Bearer {r.json()['token']}"}

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kw)

    def reserve(self, start: str, end: str, car: str = CAR, **more: Any) -> httpx.Response:
        return self.call(
            "POST", "/v1/reservations", json={"car_id": car, "start": start, "end": end, **more}
        )


def error(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


def test_a_driver_logs_in_and_reserves_a_car(api):
    bob = Phone(api, BOB)
    r = bob.reserve(at(24, 10), at(24, 13))
    assert r.status_code == 201, r.text
    booked = r.json()
    assert (booked["car_id"], booked["driver_id"], booked["status"]) == (CAR, BOB, "reserved")
    assert booked["start"] == at(24, 10) and booked["end"] == at(24, 13)
    assert booked["fee_yen"] == 1500  # SPEC F-TIME-1: the 3-hour pack
    listed = bob.call("GET", "/v1/reservations").json()
    assert [x["id"] for x in listed] == [booked["id"]]


def test_wrong_password_and_unknown_account_are_refused_alike(api):
    http = httpx.Client(base_url=api.url)
    for account, password in ((BOB, "wrong"), ("XXY00001999", PASSWORD), ("", "")):
        r = http.post("/v1/login", json={"account_id": account, "password": password})
        assert r.status_code == 401
        assert error(r)["code"] == "bad_login"


def test_a_member_id_cannot_reserve(api):
    # SPEC C-DRV-1: only driver IDs reserve.
    member = Phone(api, MEMBER)
    r = member.reserve(at(24, 10), at(24, 11))
    assert r.status_code == 403
    assert error(r)["code"] == "not_a_driver"
    assert member.call("GET", "/v1/reservations").json() == []


def test_who_sees_which_reservations(api):
    bob, admin, member, other = (Phone(api, a) for a in (BOB, ADMIN, MEMBER, OTHER))
    mine = bob.reserve(at(24, 10), at(24, 11)).json()["id"]
    theirs = admin.reserve(at(25, 10), at(25, 11)).json()["id"]
    ids = lambda phone: {x["id"] for x in phone.call("GET", "/v1/reservations").json()}  # noqa: E731
    assert ids(bob) == {mine}  # a plain driver sees only their own
    assert ids(admin) == {mine, theirs}  # the admin driver sees all of the member's drivers
    assert ids(member) == {mine, theirs}  # so does the member ID
    assert ids(other) == set()
    for path in (f"/v1/reservations/{mine}", f"/v1/reservations/{mine}/cancellation"):
        r = other.call("GET", path)
        assert r.status_code == 404 and error(r)["code"] == "not_found"
    r = bob.call("GET", f"/v1/reservations/{theirs}")
    assert r.status_code == 404


def test_another_drivers_reservation_cannot_be_changed_or_cancelled(api):
    bob, other = Phone(api, BOB), Phone(api, OTHER)
    rid = bob.reserve(at(24, 10), at(24, 11)).json()["id"]
    before = bob.call("GET", f"/v1/reservations/{rid}").json()
    assert (
        other.call(
            "PATCH", f"/v1/reservations/{rid}", json={"start": at(24, 12), "end": at(24, 13)}
        ).status_code
        == 404
    )
    assert other.call("POST", f"/v1/reservations/{rid}/cancel", json={"fee": 0}).status_code == 404
    assert bob.call("GET", f"/v1/reservations/{rid}").json() == before


def test_a_car_cannot_be_booked_inside_another_reservations_buffer(api):
    # SPEC C-CAR-1 through the API: 30 minutes either side of Bob's reservation.
    bob, admin = Phone(api, BOB), Phone(api, ADMIN)
    assert bob.reserve(at(24, 10), at(24, 12)).status_code == 201
    r = admin.reserve(at(24, 12, 15), at(24, 13))
    assert r.status_code == 409 and error(r)["code"] == "car_buffer"
    assert "30" in error(r)["message"] and error(r)["message_ja"]
    assert admin.reserve(at(24, 12, 30), at(24, 13)).status_code == 201
    assert len(admin.call("GET", "/v1/reservations").json()) == 2


def test_malformed_requests_get_a_clear_422_and_change_nothing(api):
    bob = Phone(api, BOB)
    cases = [
        (b"{not json", "json"),
        (json.dumps({"car_id": CAR, "start": at(24, 10)}).encode(), "end"),
        (json.dumps({"car_id": 7, "start": at(24, 10), "end": at(24, 11)}).encode(), "car_id"),
        (json.dumps({"car_id": CAR, "start": "tomorrow", "end": at(24, 11)}).encode(), "start"),
        (
            json.dumps({"car_id": CAR, "start": "2026-11-24T10:00", "end": at(24, 11)}).encode(),
            "start",
        ),
        (
            json.dumps(
                {"car_id": CAR, "start": at(24, 10), "end": at(24, 11), "seats": 4}
            ).encode(),
            "seats",
        ),
        (b"[]", "body"),
    ]
    for raw, named in cases:
        r = bob.call(
            "POST",
            "/v1/reservations",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422, (raw, r.text)
        body = error(r)
        assert body["code"] == "invalid_request"
        assert named in body["message"].lower(), (named, body["message"])
    assert bob.call("GET", "/v1/reservations").json() == []


def test_rule_refusals_name_the_rule(api):
    bob = Phone(api, BOB)
    r = bob.reserve(at(24, 10, 5), at(24, 11))
    assert r.status_code == 422 and error(r)["code"] == "grid"  # SPEC C-GRID-1
    r = bob.reserve(at(24, 10), at(24, 10, 15))
    assert r.status_code == 422 and error(r)["code"] == "too_short"
    r = bob.reserve(at(24, 10), at(24, 11), car="car-9")
    assert r.status_code == 404 and error(r)["code"] == "unknown_car"


def test_tokens_expire_and_forged_tokens_are_refused(api, clock):
    bob = Phone(api, BOB)
    assert bob.call("GET", "/v1/reservations").status_code == 200
    clock.advance(hours=12)
    r = bob.call("GET", "/v1/reservations")
    assert r.status_code == 401 and error(r)["code"] == "token_expired"
    r = bob.http.get("/v1/reservations", headers={"Authorization": "Bearer abc.def.ghi"})
    assert r.status_code == 401 and error(r)["code"] == "bad_token"
    r = bob.http.get("/v1/reservations")
    assert r.status_code == 401 and error(r)["code"] == "no_token"


def test_cancelling_shows_the_fee_first_and_charges_only_the_accepted_fee(api, clock):
    # SPEC C-CAN-1, F-CAN-1: free until 60 minutes before, then 50 % until the start.
    bob = Phone(api, BOB)
    free = bob.reserve(at(24, 10), at(24, 13)).json()["id"]
    quote = bob.call("GET", f"/v1/reservations/{free}/cancellation").json()
    assert (quote["ok"], quote["fee_yen"]) == (True, 0)
    done = bob.call("POST", f"/v1/reservations/{free}/cancel", json={"fee": 0})
    assert done.status_code == 200 and done.json()["status"] == "cancelled"

    late = bob.reserve(at(24, 14), at(24, 17)).json()["id"]
    clock.now = dt.datetime(2026, 11, 24, 13, 30, tzinfo=JST)  # 30 minutes before the start
    bob = Phone(api, BOB)  # the morning after: logged in again
    quote = bob.call("GET", f"/v1/reservations/{late}/cancellation").json()
    assert quote["fee_yen"] == 750  # 50 % of the 3-hour pack
    r = bob.call("POST", f"/v1/reservations/{late}/cancel", json={"fee": 0})
    assert r.status_code == 409 and error(r)["code"] == "fee_changed" and error(r)["fee"] == 750
    assert bob.call("GET", f"/v1/reservations/{late}").json()["status"] == "reserved"
    r = bob.call("POST", f"/v1/reservations/{late}/cancel", json={"fee": 750})
    assert r.json()["cancellation_fee_yen"] == 750


def test_changes_are_recorded_and_limited(api):
    # SPEC C-CHG-1: at most two changes; each is kept in the reservation's history.
    bob = Phone(api, BOB)
    rid = bob.reserve(at(25, 10), at(25, 11)).json()["id"]
    for hour in (12, 14):
        r = bob.call(
            "PATCH",
            f"/v1/reservations/{rid}",
            json={"start": at(25, hour), "end": at(25, hour + 1)},
        )
        assert r.status_code == 200, r.text
    r = bob.call("PATCH", f"/v1/reservations/{rid}", json={"start": at(25, 16), "end": at(25, 17)})
    assert r.status_code == 422 and error(r)["code"] == "change_limit"
    shown = bob.call("GET", f"/v1/reservations/{rid}").json()
    assert (shown["start"], shown["changes"]) == (at(25, 14), 2)
    assert [h["kind"] for h in shown["history"]] == ["created", "changed", "changed"]


def test_a_running_trip_is_extended_by_fifteen_minutes_or_to_a_mark(api, fleet, clock):
    # SPEC C-EXT-1: during the trip, at most twice, not into the next reservation's buffer.
    bob, admin = Phone(api, BOB), Phone(api, ADMIN)
    rid = bob.reserve(at(24, 10), at(24, 12)).json()["id"]
    assert admin.reserve(at(24, 13), at(24, 14), car=CAR).status_code == 201
    clock.now = dt.datetime(2026, 11, 24, 10, 0, tzinfo=JST)
    fleet.start_trip(rid, started_at=clock.now)  # as the car will report it (sync issue)
    bob = Phone(api, BOB)  # next morning, logged in again
    r = bob.call("POST", f"/v1/reservations/{rid}/extend", json={})
    assert r.status_code == 200 and r.json()["end"] == at(24, 12, 15)
    r = bob.call("POST", f"/v1/reservations/{rid}/extend", json={"end": at(24, 12, 45)})
    assert r.status_code == 409 and error(r)["code"] == "extension_conflict"
    r = bob.call("POST", f"/v1/reservations/{rid}/extend", json={"end": at(24, 12, 30)})
    assert r.status_code == 200 and r.json()["extensions"] == 2
    r = bob.call("POST", f"/v1/reservations/{rid}/extend", json={})
    assert r.status_code in (409, 422) and error(r)["code"] in (
        "extension_limit",
        "extension_conflict",
    )


def test_remote_operations_check_the_caller_and_say_when_no_car_link_exists(api):
    bob, other, member = Phone(api, BOB), Phone(api, OTHER), Phone(api, MEMBER)
    rid = bob.reserve(at(24, 10), at(24, 11)).json()["id"]
    r = other.call("POST", f"/v1/reservations/{rid}/operations/start", json={})
    assert r.status_code == 404
    r = member.call("POST", f"/v1/reservations/{rid}/operations/start", json={})
    assert r.status_code == 403 and error(r)["code"] == "not_a_driver"
    r = bob.call("POST", f"/v1/reservations/{rid}/operations/fly", json={})
    assert r.status_code == 404 and error(r)["code"] == "unknown_operation"
    r = bob.call("POST", f"/v1/reservations/{rid}/operations/start", json={})
    assert r.status_code == 503 and error(r)["code"] == "car_link_unavailable"


def test_quotes_show_the_fee_and_its_packs_without_booking(api):
    bob = Phone(api, BOB)
    r = bob.call("POST", "/v1/quotes", json={"car_id": CAR, "start": at(24, 10), "end": at(24, 19)})
    quote = r.json()
    assert (quote["ok"], quote["fee_yen"]) == (True, 4500)  # SPEC F-TIME-1: three 3-hour packs
    assert "x3" in quote["breakdown"]["en"]
    assert bob.call("GET", "/v1/reservations").json() == []


def test_the_openapi_document_lists_every_operation(api):
    spec = httpx.get(f"{api.url}/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/login", "/v1/reservations", "/v1/quotes", "/v1/invoices"} <= set(paths)
    assert {"get", "patch"} <= set(paths["/v1/reservations/{reservation_id}"])
    assert "/v1/reservations/{reservation_id}/operations/{name}" in paths


def test_invoices_follow_the_same_visibility_as_reservations(api, fleet):
    bob, admin, other = Phone(api, BOB), Phone(api, ADMIN), Phone(api, OTHER)
    bobs = bob.reserve(at(24, 10), at(24, 11)).json()["id"]
    admins = admin.reserve(at(25, 10), at(25, 11)).json()["id"]
    for rid in (bobs, admins):
        fleet.add_invoice(MEMBER, [{"code": "time", "yen": 600}], reservation_id=rid)
    seen = lambda phone: {i["reservation_id"] for i in phone.call("GET", "/v1/invoices").json()}  # noqa: E731
    assert seen(bob) == {bobs}
    assert seen(admin) == {bobs, admins}
    assert seen(other) == set()
    (invoice,) = bob.call("GET", "/v1/invoices").json()
    assert invoice["total_yen"] == 600 and invoice["lines"][0]["code"] == "time"

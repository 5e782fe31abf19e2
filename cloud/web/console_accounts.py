"""The console's accounts and stations pages (SPEC O-ADM-1), beside `console_admin`:

- `/console/admin/accounts`: members (add; suspend, reinstate — also a member revoked by
  C-PEN-1), drivers (add), cards (register one from its IDm, kept only as its keyed hash), the
  late returns that count as penalties (lift one), and the mails (resend one).
- `/console/admin/stations`: stations with their geofence and their cars (add either).

Every change is an operator's (`admin_change`) and goes to the audit log (`ConsoleSite.change`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from cloud.service import Refused
from cloud.store.fleet import FLEET_KEY
from cloud.store.records import MEMBER_STATUSES
from cloud.web.console_base import ConsoleShown, ConsoleSite
from cloud.web.phone_base import Csrf
from protocol.cards import card_hash, parse_idm

ACCOUNTS, STATIONS = "/console/admin/accounts", "/console/admin/stations"
Text = Annotated[str, Form(max_length=200)]

TEXTS = {
    "accounts": ("会員・ドライバー", "Members and drivers"),
    "stations": ("ステーション・車両", "Stations and cars"),
    "members": ("会員", "Members"),
    "add_member": ("会員を追加", "Add a member"),
    "add_driver": ("ドライバーを追加", "Add a driver"),
    "add_card": ("カードを登録", "Register a card"),
    "email": ("メール", "E-mail"),
    "idm": ("カードのIDm (16桁)", "The card's IDm (16 hex digits)"),
    "status_active": ("有効", "active"),
    "status_suspended": ("利用停止", "suspended"),
    "status_revoked": ("取消", "revoked"),
    "suspend": ("利用停止", "Suspend"),
    "reinstate": ("再開", "Reinstate"),
    "penalties": ("無断延長 (ペナルティ)", "Late returns (penalties)"),
    "lift": ("取り消す", "Lift"),
    "mails": ("メール", "Mails"),
    "sent": ("送信", "Sent"),
    "attempts": ("試行", "Attempts"),
    "resend": ("再送", "Resend"),
    "add_station": ("ステーションを追加", "Add a station"),
    "add_car": ("車両を追加", "Add a car"),
    "lat": ("緯度", "Latitude"),
    "lon": ("経度", "Longitude"),
    "radius": ("範囲 (m)", "Radius (m)"),
}


def number(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise Refused(422, "bad_number", f"{field}: enter a number, got {text!r}") from None


def add_routes(routes: APIRouter, site: ConsoleSite) -> None:
    site.texts.update(TEXTS)
    console, store, local, change = site.console, site.store, site.local, site.change

    def reading(request: Request) -> Any:
        who, me = site.staff(request)
        with site.refusals(request):
            console.require(who, "admin")
        return me

    @routes.get("/admin/accounts")
    def accounts(request: Request) -> Response:
        me = reading(request)
        context = {
            "members": store.list_members(),
            "drivers": store.list_drivers(),
            "late": [
                {"member": m, "driver": d, "rid": r, "end": local(e)}
                for m, d, r, e in store.late_returns()
            ],
            "mails": [
                {"n": n, "created": local(n.created_at), "sent": local(n.sent_at)}
                for n in store.recent_notifications()
            ],
        }
        return site.page(request, "accounts.html", context, staff=me)

    @routes.post("/admin/members")
    def add_member(
        request: Request, csrf: Csrf = None, member_id: Text = "", name: Text = "",
        email: Text = "",
    ) -> Response:  # fmt: skip
        def do() -> dict[str, Any]:
            store.add_member(member_id.strip(), name=name, email=email.strip() or None)
            return {"name": name}

        return change(request, csrf, "add_member", member_id, do, ACCOUNTS)

    @routes.post("/admin/members/{member_id}/status")
    def member_status(
        request: Request, member_id: str, csrf: Csrf = None, status: Text = ""
    ) -> Response:
        if status not in MEMBER_STATUSES:
            raise ConsoleShown(422, "bad_status", f"status: one of {', '.join(MEMBER_STATUSES)}")

        def do() -> dict[str, Any]:
            store.set_member_status(member_id, status)
            return {"status": status}

        return change(request, csrf, "set_member_status", member_id, do, ACCOUNTS)

    @routes.post("/admin/drivers")
    def add_driver(
        request: Request, csrf: Csrf = None, driver_id: Text = "", name: Text = "",
        email: Text = "", licence_expiry: Text = "",
    ) -> Response:  # fmt: skip
        def do() -> dict[str, Any]:
            try:
                expiry = dt.date.fromisoformat(licence_expiry) if licence_expiry else None
            except ValueError:
                raise Refused(422, "bad_date", "licence_expiry: expected YYYY-MM-DD") from None
            store.add_driver(driver_id.strip(), name=name, email=email.strip(),
                             licence_expiry=expiry)  # fmt: skip
            return {"name": name}

        return change(request, csrf, "add_driver", driver_id, do, ACCOUNTS)

    @routes.post("/admin/cards")
    def add_card(
        request: Request, csrf: Csrf = None, driver_id: Text = "", idm: Text = ""
    ) -> Response:
        def do() -> dict[str, Any]:
            key = store.get_setting(FLEET_KEY)
            if key is None:
                raise Refused(409, "no_fleet_key", "the cloud has no fleet key yet")
            try:
                hashed = card_hash(bytes.fromhex(key), parse_idm(idm))
            except ValueError as exc:
                raise Refused(422, "bad_idm", f"idm: {exc}") from None
            store.add_card(driver_id, hashed)
            return {"card": hashed[:12]}

        return change(request, csrf, "add_card", driver_id, do, ACCOUNTS)

    @routes.post("/admin/penalties/{reservation_id}/lift")
    def lift(request: Request, reservation_id: str, csrf: Csrf = None) -> Response:
        def do() -> None:
            store.lift_penalty(reservation_id)

        return change(request, csrf, "lift_penalty", reservation_id, do, ACCOUNTS)

    @routes.post("/admin/mails/{notification_id}/resend")
    def resend(request: Request, notification_id: int, csrf: Csrf = None) -> Response:
        def do() -> dict[str, Any]:
            return {"copy": store.resend_notification(notification_id)}

        return change(request, csrf, "resend_mail", str(notification_id), do, ACCOUNTS)

    @routes.get("/admin/stations")
    def stations(request: Request) -> Response:
        me = reading(request)
        context = {"stations": store.list_stations(), "cars": store.list_cars()}
        return site.page(request, "stations.html", context, staff=me)

    @routes.post("/admin/stations")
    def add_station(
        request: Request, csrf: Csrf = None, station_id: Text = "", name: Text = "",
        lat: Text = "", lon: Text = "", radius_m: Text = "50",
    ) -> Response:  # fmt: skip
        def do() -> dict[str, Any]:
            store.add_station(
                station_id.strip(), name=name, lat=number(lat, "lat"), lon=number(lon, "lon"),
                radius_m=number(radius_m, "radius_m"),
            )  # fmt: skip
            return {"lat": lat, "lon": lon, "radius_m": radius_m}

        return change(request, csrf, "add_station", station_id, do, STATIONS)

    @routes.post("/admin/cars")
    def add_car(
        request: Request, csrf: Csrf = None, car_id: Text = "", station_id: Text = "",
        name: Text = "",
    ) -> Response:  # fmt: skip
        def do() -> dict[str, Any]:
            store.add_car(car_id.strip(), station_id=station_id, name=name)
            return {"station_id": station_id}

        return change(request, csrf, "add_car", car_id, do, STATIONS)

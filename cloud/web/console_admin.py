"""The console's admin page (SPEC O-ADM-1), under `/console/admin`: drivers with their licence
expiry, cards (revoke at once, U-CARD-4), drivers' change applications to decide (P-WEB-6) and
damage reports with their trips (P-WEB-7). Reads need the `admin` action, changes
`admin_change` (operators only); every change is in the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from cloud.service import Refused
from cloud.web.console_base import ConsoleShown, ConsoleSite
from cloud.web.phone_base import Csrf

ADMIN = "/console/admin"
TEXTS = {
    "drivers": ("ドライバー", "Drivers"),
    "member": ("会員", "Member"),
    "licence_expiry": ("免許有効期限", "Licence expiry"),
    "cards": ("カード", "Cards"),
    "card": ("カード", "Card"),
    "revoke": ("失効させる", "Revoke"),
    "revoked": ("失効", "revoked"),
    "active": ("有効", "active"),
    "applications": ("変更申請", "Change applications"),
    "fields": ("申請内容", "Asked for"),
    "approve": ("承認", "Approve"),
    "reject": ("却下", "Reject"),
    "damage_reports": ("損傷・汚れの報告", "Damage reports"),
    "reservation": ("予約", "Reservation"),
    "kind": ("種類", "Kind"),
    "note": ("メモ", "Note"),
    "photos": ("写真", "Photos"),
    "none": ("ありません", "None"),
    "refuels": ("給油", "Refuels"),
    "record_refuel": ("領収書から給油を記録", "Record a refuel from its receipt"),
    "litres": ("給油量 (L)", "Litres"),
    "amount": ("金額 (円)", "Amount (yen)"),
    "refuel_at": ("給油日時", "Refuelled at"),
    "kind_receipt": ("給油カード (領収書)", "fuel card (receipt)"),
    "kind_emergency": ("立替払い (精算)", "paid by the driver (reimburse)"),
    "recorded": ("記録", "Recorded"),
    "adjustment": ("調整請求: {yen} 円", "Adjustment invoiced: {yen} yen"),
    "no_adjustment": ("請求への変更はありません", "The invoice does not change"),
}


def add_routes(routes: APIRouter, site: ConsoleSite) -> None:
    site.texts.update(TEXTS)
    console, store, local = site.console, site.store, site.local

    @routes.get("/admin")
    def admin(request: Request) -> Response:
        who, me = site.staff(request)
        with site.refusals(request):
            console.require(who, "admin")
        drivers = store.list_drivers()
        context = {
            "drivers": drivers,
            "cards": store.list_cards(),
            "applications": [
                {"a": a, "at": local(a.created_at)} for a in store.list_change_applications()
            ],
            "reports": [{"r": r, "at": local(r.created_at)} for r in store.list_damage_reports()],
            "refuels": [{"f": f, "at": local(f.at)} for f in store.recent_refuels()],
            "adjustment": request.query_params.get("adjustment"),
        }
        return site.page(request, "admin.html", context, staff=me)

    @routes.post("/admin/refuels")
    def refuel(
        request: Request,
        csrf: Csrf = None,
        reservation_id: Annotated[str, Form(max_length=64)] = "",
        at: Annotated[str, Form(max_length=40)] = "",
        litres: Annotated[str, Form(max_length=20)] = "",
        amount_yen: Annotated[str, Form(max_length=20)] = "",
        kind: Annotated[str, Form(max_length=20)] = "receipt",
    ) -> Response:
        site.checked(request, csrf)
        who, _ = site.staff(request)
        with site.refusals(request, back="/console/admin"):
            try:
                amount, volume = int(amount_yen), float(litres)
            except ValueError:
                raise Refused(
                    422, "bad_number", "litres and amount: enter numbers (e.g. 25.4 and 4200)"
                ) from None
            _, adjustment = console.record_refuel(
                who, reservation_id.strip(), at=site.instant(at, "at"), litres=volume,
                amount_yen=amount, kind=kind,
            )  # fmt: skip
        shown = "0" if adjustment is None else str(adjustment.total)
        return site.go(f"/console/admin?adjustment={shown}#refuels")

    @routes.post("/admin/drivers/{driver_id}/licence")
    def licence(
        request: Request,
        driver_id: str,
        csrf: Csrf = None,
        licence_expiry: Annotated[str, Form(max_length=10)] = "",
    ) -> Response:
        def do() -> dict[str, Any]:
            try:
                day = dt.date.fromisoformat(licence_expiry)
            except ValueError:
                raise Refused(422, "bad_date", "licence_expiry: expected YYYY-MM-DD") from None
            store.update_driver(driver_id, licence_expiry=day)
            return {"licence_expiry": day.isoformat()}

        return site.change(request, csrf, "set_licence_expiry", driver_id, do, ADMIN)

    @routes.post("/admin/cards/{card_hash}/revoke")
    def revoke(request: Request, card_hash: str, csrf: Csrf = None) -> Response:
        def do() -> dict[str, Any]:
            return {"driver_id": store.revoke_card(card_hash).driver_id}

        return site.change(request, csrf, "revoke_card", card_hash[:12], do, ADMIN)

    @routes.post("/admin/applications/{application_id}/{decision}")
    def decide(
        request: Request,
        application_id: int,
        decision: str,
        csrf: Csrf = None,
        reason: Annotated[str, Form(max_length=500)] = "",
    ) -> Response:
        if decision not in ("approve", "reject"):
            raise ConsoleShown(404, "unknown_decision", f"no decision {decision!r}")
        who = site.caller(request)

        def do() -> dict[str, Any]:
            store.decide_change_application(
                application_id, decision == "approve", who.account_id, reason
            )
            return {"reason": reason}

        target = str(application_id)
        return site.change(request, csrf, f"{decision}_application", target, do, ADMIN)

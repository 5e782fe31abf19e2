"""A reservation's page on the phone site (SPEC P-WEB-2, -4): its details and history, the car
controls (`cloud.web.phone_car`), change (C-CHG-1, the changes left), cancel (the fee shown and
accepted first, C-CAN-1) and extend during the trip (C-EXT-1).

Routes: GET /reservations/{id}, GET|POST /reservations/{id}/change, GET|POST
/reservations/{id}/cancel, POST /reservations/{id}/extend.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from cloud.auth import Caller
from cloud.service import Refused, ReservationView
from cloud.web.phone_base import Csrf, PhoneSite, Shown
from cloud.web.phone_car import controls

DONE = ("reserved", "changed", "cancelled", "extended", "reported")


def _yen(n: int) -> str:
    return f"¥{n:,}"


def add_routes(routes: APIRouter, site: PhoneSite) -> None:
    cloud = site.cloud
    policy = cloud.policy

    # ---- one reservation ----------------------------------------------------------------

    def detail(
        request: Request,
        who: Caller,
        reservation_id: str,
        *,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        with site.refusals():
            view = cloud.reservation(who, reservation_id)
        context = {
            "who": who,
            "r": reservation_context(request, view),
            "error": error,
            "done": done if (done := request.query_params.get("done")) in DONE else None,
            **controls(site, request, who, view),
        }
        return site.page(request, "reservation.html", context, status=status)

    def reservation_context(request: Request, view: ReservationView) -> dict[str, Any]:
        r = view.reservation
        car = cloud.store.get_car(r.car_id)
        p = policy.for_kind(car.kind)
        max_changes = p.change.max_changes
        step_minutes = int(p.extension.step.total_seconds() // 60)
        end_local = r.end.astimezone(site.zone)
        return {
            "id": r.reservation_id,
            "car_id": r.car_id,
            "car_name": car.name,
            "driver_id": r.driver_id,
            "start": site.local(r.start),
            "end": site.local(r.end),
            "status": r.status,
            "fee": _yen(view.fee),
            "cancellation_fee": None if r.cancellation_fee is None else f"{r.cancellation_fee:,}",
            "changes_left": None if max_changes is None else max(0, max_changes - r.change_count),
            "extensions_left": max(0, p.extension.max_extensions - r.extension_count),
            "step": (f"{step_minutes}分" if site.lang(request) == "ja" else f"{step_minutes} min"),
            "end_day": end_local.date().isoformat(),
            "end_time": end_local.strftime("%H:%M"),
            "history": [
                {
                    "at": site.local(c.at),
                    "kind": c.kind,
                    "times": " – ".join(
                        x for x in (site.local(c.new_start), site.local(c.new_end)) if x
                    ),
                }
                for c in view.history
            ],
            "reportable": r.status in ("reserved", "in_use"),
        }

    @routes.get("/reservations/{reservation_id}")
    def reservation(request: Request, reservation_id: str) -> Response:
        return detail(request, site.caller(request), reservation_id)

    # ---- change -------------------------------------------------------------------------

    def change_page(
        request: Request, who: Caller, reservation_id: str, error: str | None, status: int
    ) -> Response:
        with site.refusals():
            view = cloud.reservation(who, reservation_id)
        r = view.reservation
        start, end = r.start.astimezone(site.zone), r.end.astimezone(site.zone)
        context = {
            "who": who,
            "r": reservation_context(request, view),
            "error": error,
            "start_day": start.date().isoformat(),
            "start_time": start.strftime("%H:%M"),
            "end_day": end.date().isoformat(),
            "end_time": end.strftime("%H:%M"),
            "times": site.times(),
        }
        return site.page(request, "change.html", context, status=status)

    @routes.get("/reservations/{reservation_id}/change")
    def change_form(request: Request, reservation_id: str) -> Response:
        return change_page(request, site.caller(request), reservation_id, None, 200)

    @routes.post("/reservations/{reservation_id}/change")
    def change(
        request: Request,
        reservation_id: str,
        csrf: Csrf = None,
        start_day: Annotated[str, Form(max_length=10)] = "",
        start: Annotated[str, Form(max_length=5)] = "",
        end_day: Annotated[str, Form(max_length=10)] = "",
        end: Annotated[str, Form(max_length=5)] = "",
    ) -> Response:
        site.checked(request, csrf)
        who = site.caller(request)
        try:
            s = site.at(start_day, start, site.text(request, "start"))
            e = site.at(end_day, end, site.text(request, "end"))
            cloud.change(who, reservation_id, s, e)
        except Refused as exc:
            if exc.status == 404:
                raise site_shown(exc) from exc
            return change_page(request, who, reservation_id, site.message(request, exc), exc.status)
        return site.go(f"/reservations/{reservation_id}?done=changed")

    # ---- cancel -------------------------------------------------------------------------

    def cancel_page(
        request: Request, who: Caller, reservation_id: str, error: str | None, status: int
    ) -> Response:
        with site.refusals():
            view = cloud.reservation(who, reservation_id)
            decision = cloud.cancellation(who, reservation_id)
        context = {
            "who": who,
            "r": reservation_context(request, view),
            "error": error,
            "ok": decision.ok,
            "message": decision.message_ja if site.lang(request) == "ja" else decision.message_en,
            "fee": decision.fee,
            "fee_text": _yen(decision.fee or 0),
        }
        return site.page(request, "cancel.html", context, status=status)

    @routes.get("/reservations/{reservation_id}/cancel")
    def cancel_form(request: Request, reservation_id: str) -> Response:
        return cancel_page(request, site.caller(request), reservation_id, None, 200)

    @routes.post("/reservations/{reservation_id}/cancel")
    def cancel(
        request: Request,
        reservation_id: str,
        csrf: Csrf = None,
        fee: Annotated[str, Form(max_length=12)] = "",
        accept: Annotated[str, Form(max_length=8)] = "",
    ) -> Response:
        site.checked(request, csrf)
        who = site.caller(request)
        if accept != "yes":
            with site.refusals():
                cloud.reservation(who, reservation_id)  # someone else's: 404 first
            return cancel_page(
                request, who, reservation_id, site.text(request, "cancel_must_accept"), 422
            )
        try:
            accepted = int(fee)
        except ValueError:
            accepted = -1
        try:
            if accepted < 0:
                raise Refused(422, "bad_fee", "the form's fee is missing", "キャンセル料が不明です")
            cloud.cancel(who, reservation_id, accepted)
        except Refused as exc:
            if exc.status == 404:
                raise site_shown(exc) from exc
            return cancel_page(request, who, reservation_id, site.message(request, exc), exc.status)
        return site.go(f"/reservations/{reservation_id}?done=cancelled")

    # ---- extend -------------------------------------------------------------------------

    @routes.post("/reservations/{reservation_id}/extend")
    def extend(
        request: Request,
        reservation_id: str,
        csrf: Csrf = None,
        end_day: Annotated[str, Form(max_length=10)] = "",
        end: Annotated[str, Form(max_length=5)] = "",
    ) -> Response:
        site.checked(request, csrf)
        who = site.caller(request)
        try:
            target = site.at(end_day, end, site.text(request, "end")) if end else None
            cloud.extend(who, reservation_id, target)
        except Refused as exc:
            if exc.status == 404:
                raise site_shown(exc) from exc
            return detail(
                request, who, reservation_id, error=site.message(request, exc), status=exc.status
            )
        return site.go(f"/reservations/{reservation_id}?done=extended")


def site_shown(exc: Refused) -> Exception:
    return Shown(exc)

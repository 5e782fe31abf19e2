"""The phone site's booking (SPEC P-WEB-2): a day's stations and cars with their free and taken
slots, a quote (the time fee with its packs, F-TIME-1), reserve; a reservation's page with
change (C-CHG-1, the changes left), cancel (the fee shown and accepted first, C-CAN-1) and
extend during the trip (C-EXT-1) are on the reservation's page (`cloud.web.phone_reservation`).
Every refusal names the rule in the driver's language, with the next possible start where the
car is taken.

Routes: GET /book, GET /quote, POST /reserve.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from cloud.auth import Caller
from cloud.decision import duration_en, duration_ja
from cloud.fees import reservation_fee
from cloud.service import Refused
from cloud.web.phone_base import Csrf, PhoneSite

TEXTS = {
    "book": ("予約する", "Book"),
    "trips": ("利用履歴", "Past trips"),
    "account": ("会員情報", "Account"),
    "back": ("戻る", "Back"),
    "day": ("日付", "Day"),
    "show_day": ("表示", "Show"),
    "station": ("ステーション", "Station"),
    "legend_free": ("空き", "free"),
    "legend_taken": ("予約済", "taken"),
    "legend_buffer": ("予約の前後（予約不可）", "kept free between bookings"),
    "legend_past": ("過去", "past"),
    "taken_at": ("予約済: {spans}", "Taken: {spans}"),
    "all_free": ("終日空き", "Free all day"),
    "start": ("開始", "Start"),
    "end": ("終了", "End"),
    "get_quote": ("料金を確認", "See the price"),
    "quote": ("料金の確認", "Price"),
    "time_fee": ("時間料金", "Time fee"),
    "breakdown": ("内訳", "Made of"),
    "pack": ("{length}パック × {n}", "pack of {length} × {n}"),
    "units": ("{unit} × {n}", "{unit} × {n}"),
    "reserve": ("この内容で予約する", "Reserve"),
    "refused": ("予約できません", "Cannot be reserved"),
    "next_free": ("この車は {at} から同じ時間空いています", "The car is free as long from {at}"),
    "try_next": ("この時間で確認", "Check this time"),
    "reservation": ("予約", "Reservation"),
    "done_reserved": ("予約しました", "Reserved"),
    "done_changed": ("予約を変更しました", "The reservation was changed"),
    "done_cancelled": ("予約を取り消しました", "The reservation was cancelled"),
    "done_extended": ("延長しました", "The trip was extended"),
    "done_reported": ("報告を受け付けました", "Your report was received"),
    "changes_left": ("変更はあと {n} 回できます", "{n} change(s) left"),
    "changes_unlimited": ("変更できます", "Can be changed"),
    "extensions_left": ("延長はあと {n} 回できます", "{n} extension(s) left"),
    "change": ("予約を変更", "Change"),
    "change_save": ("変更する", "Change it"),
    "cancel": ("予約を取り消す", "Cancel"),
    "cancel_fee": ("キャンセル料: {fee}", "Cancellation fee: {fee}"),
    "cancel_accept": (
        "上記のキャンセル料に同意します",
        "I accept the cancellation fee above",
    ),
    "cancel_confirm": ("取り消す", "Cancel the reservation"),
    "cancel_must_accept": (
        "キャンセル料への同意が必要です",
        "Accept the cancellation fee first",
    ),
    "extend": ("延長", "Extend"),
    "extend_step": ("{step}延長する", "Extend by {step}"),
    "extend_to": ("この時刻まで延長", "Extend to this time"),
    "history": ("履歴", "History"),
    "history_created": ("予約", "reserved"),
    "history_changed": ("変更", "changed"),
    "history_extended": ("延長", "extended"),
    "history_cancelled": ("取消", "cancelled"),
    "history_started": ("利用開始", "started"),
    "history_returned": ("返却", "returned"),
    "report_damage": ("キズ・汚れ・パンクを報告", "Report damage, dirt or a flat tyre"),
    "cancellation_fee_paid": ("キャンセル料: ¥{fee}", "Cancellation fee: ¥{fee}"),
}


def _yen(n: int) -> str:
    return f"¥{n:,}"


def add_routes(routes: APIRouter, site: PhoneSite) -> None:
    site.texts.update(TEXTS)
    cloud, requests = site.cloud, site.requests
    policy = cloud.policy

    # ---- the day's grid -----------------------------------------------------------------

    @routes.get("/book")
    def book(request: Request, day: str | None = None) -> Response:
        who = site.caller(request)
        try:
            chosen = dt.date.fromisoformat(day) if day else site.today()
        except ValueError:
            chosen = site.today()
        stations: dict[str, dict[str, Any]] = {}
        for cd in requests.day(chosen):
            st = stations.setdefault(
                cd.station.station_id,
                {"id": cd.station.station_id, "name": cd.station.name, "cars": []},
            )
            spans = _spans([(t, s) for t, s in cd.slots], policy.booking.grid)
            st["cars"].append(
                {
                    "id": cd.car.car_id,
                    "name": cd.car.name,
                    "slots": [
                        {
                            "hm": t.astimezone(site.zone).strftime("%H%M"),
                            "label": t.astimezone(site.zone).strftime("%H:%M"),
                            "state": s,
                        }
                        for t, s in cd.slots
                    ],
                    "taken": ", ".join(spans),
                }
            )
        context = {
            "who": who,
            "day": chosen.isoformat(),
            "stations": list(stations.values()),
            "times": site.times(),
            "hours": list(range(0, 24, 3)),
        }
        return site.page(request, "book.html", context)

    # ---- quote and reserve --------------------------------------------------------------

    def quote_page(
        request: Request,
        who: Caller,
        car_id: str,
        start: dt.datetime,
        end: dt.datetime,
        refusal: Refused | None = None,
    ) -> Response:
        context: dict[str, Any] = {
            "who": who,
            "car_id": car_id,
            "start_day": start.astimezone(site.zone).date().isoformat(),
            "start": start.astimezone(site.zone).strftime("%H:%M"),
            "end_day": end.astimezone(site.zone).date().isoformat(),
            "end": end.astimezone(site.zone).strftime("%H:%M"),
            "span": f"{site.local(start)} – {site.local(end)}",
            "ok": False,
            "message": "",
            "code": "",
            "fee": "",
            "lines": [],
            "next": None,
        }
        if refusal is None:
            with site.refusals(back="/book"):
                decision = cloud.quote(who, car_id, start, end)
            ok, code = decision.ok, decision.code
            message = decision.message_ja if site.lang(request) == "ja" else decision.message_en
        else:
            ok, code, message = False, refusal.code, site.message(request, refusal)
        context.update(ok=ok, code=code, message=message)
        car = cloud.store.get_car(car_id)
        p = policy.for_kind(car.kind)
        if ok:
            tf = reservation_fee(p, start, end)
            dur = duration_ja if site.lang(request) == "ja" else duration_en
            lines = [
                {
                    "text": site.text(request, "pack", length=dur(pk.length), n=n),
                    "yen": _yen(pk.yen * n),
                }
                for pk, n in tf.packs
            ]
            if tf.units or not tf.packs:
                lines.append(
                    {
                        "text": site.text(request, "units", unit=dur(p.fees.unit), n=tf.units),
                        "yen": _yen(tf.units * p.fees.unit_yen),
                    }
                )
            context.update(fee=_yen(tf.yen), lines=lines)
        elif code in ("car_buffer",):
            at = requests.next_free_start(car_id, start, end)
            if at is not None:
                later = at + (end - start)
                context["next"] = {
                    "label": site.local(at),
                    "href": (
                        f"/quote?car_id={car_id}&start_day={at.astimezone(site.zone).date()}"
                        f"&start={at.astimezone(site.zone):%H:%M}"
                        f"&end_day={later.astimezone(site.zone).date()}"
                        f"&end={later.astimezone(site.zone):%H:%M}"
                    ),
                }
        return site.page(
            request, "quote.html", context, status=200 if refusal is None else refusal.status
        )

    @routes.get("/quote")
    def quote(
        request: Request,
        car_id: str = "",
        start_day: str = "",
        start: str = "",
        end_day: str = "",
        end: str = "",
    ) -> Response:
        who = site.caller(request)
        with site.refusals(back="/book"):
            if car_id not in {c.car_id for c, _ in cloud.cars()}:
                raise Refused(404, "unknown_car", f"no car {car_id!r}", "車両を選んでください")
            s = site.at(start_day, start, site.text(request, "start"))
            e = site.at(end_day or start_day, end, site.text(request, "end"))
        return quote_page(request, who, car_id, s, e)

    @routes.post("/reserve")
    def reserve(
        request: Request,
        csrf: Csrf = None,
        car_id: Annotated[str, Form(max_length=64)] = "",
        start_day: Annotated[str, Form(max_length=10)] = "",
        start: Annotated[str, Form(max_length=5)] = "",
        end_day: Annotated[str, Form(max_length=10)] = "",
        end: Annotated[str, Form(max_length=5)] = "",
    ) -> Response:
        site.checked(request, csrf)
        who = site.caller(request)
        with site.refusals(back="/book"):
            s = site.at(start_day, start, site.text(request, "start"))
            e = site.at(end_day, end, site.text(request, "end"))
            if car_id not in {c.car_id for c, _ in cloud.cars()}:
                raise Refused(404, "unknown_car", f"no car {car_id}", f"車両 {car_id} はありません")
        try:
            view = cloud.reserve(who, car_id, s, e)
        except Refused as exc:
            if exc.status == 404:
                raise
            return quote_page(request, who, car_id, s, e, refusal=exc)
        return site.go(f"/reservations/{view.reservation.reservation_id}?done=reserved")


def _spans(slots: list[tuple[dt.datetime, str]], grid: dt.timedelta) -> list[str]:
    """The taken stretches of a day as "HH:MM–HH:MM"."""
    out, begin, last = [], None, None
    for t, state in [*slots, (None, "free")]:
        if state == "taken":
            if begin is None:
                begin = t
            last = t
        elif begin is not None and last is not None:
            out.append(f"{begin:%H:%M}–{(last + grid):%H:%M}")
            begin = None
    return out

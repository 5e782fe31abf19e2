"""The car controls on a reservation's page (SPEC P-WEB-4, S-SYNC-3): start, end, re-unlock,
forgotten-item unlock and lock, register a card.

Each control is a form POST to /reservations/{id}/operations/{name} carrying a one-time nonce;
the service sends one command and waits for the car's one result or times out. The result is
kept under the nonce: a second POST with it (a double tap, a reload) gets the first result and
sends nothing (`OnceOnly`), and the browser is sent back to the reservation's page, which shows
it (?op=NONCE). The page's script also disables the buttons on submit. After a card
registration starts, the page polls /reservations/{id}/cards.json for the card the car
registered.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from cloud.auth import Caller
from cloud.service import OPERATIONS, Refused, ReservationView
from cloud.web.phone_base import Csrf, PhoneSite

TEXTS = {
    "controls": ("車両の操作", "Car controls"),
    "op_start": ("利用開始（解錠）", "Start (unlock)"),
    "op_end": ("利用終了（施錠）", "End (lock)"),
    "op_reunlock": ("再解錠", "Unlock again"),
    "op_forgotten_unlock": ("忘れ物（解錠）", "Forgotten item: unlock"),
    "op_forgotten_lock": ("忘れ物（施錠）", "Forgotten item: lock"),
    "op_register_card": ("認証カードを登録", "Register a card"),
    "op_sending": ("車両に送信中…", "Sending to the car…"),
    "op_ok": ("完了しました", "Done"),
    "op_refused": ("車両が操作を受け付けませんでした", "The car refused"),
    "op_timeout": (
        "車両から時間内に応答がありませんでした（操作は無効になりました）",
        "The car did not answer in time (the command has expired)",
    ),
    "op_failed_checks": ("次の点を確認してください:", "Check the following:"),
    "check_doors": ("ドアが開いています", "A door is open"),
    "check_lights": ("ライトが点いています", "The lights are on"),
    "check_position": ("ステーションの外です", "The car is not at its station"),
    "check_brake": ("パーキングブレーキがかかっていません", "The parking brake is off"),
    "check_key": ("キーが所定の位置にありません", "The key is not in its place"),
    "check_engine": ("エンジンがかかっています", "The engine is running"),
    "card_waiting": (
        "車両がカードのタッチを待っています。リーダーにカードをタッチしてください",
        "The car is waiting for your card: tap it on the reader",
    ),
    "card_registered": ("登録されたカード: {card}", "Card registered: {card}"),
    "code_started": ("利用を開始しました", "The trip started"),
    "code_ended": ("利用を終了しました", "The trip ended"),
    "code_unlocked": ("解錠しました", "Unlocked"),
    "code_locked": ("施錠しました", "Locked"),
    "code_registration_started": ("カード登録を開始しました", "Card registration started"),
}

NONCE = re.compile(r"[0-9a-f]{32}")
LABELS = {name: f"op_{name}" for name in OPERATIONS}


def controls(
    site: PhoneSite, request: Request, who: Caller, view: ReservationView
) -> dict[str, Any]:
    """What the reservation's page needs for its controls: which are offered now, a fresh
    nonce for each form, and the result of the last operation (?op=NONCE)."""
    r = view.reservation
    now = site.cloud.clock()
    offered: list[str] = []
    if who.kind == "driver":
        if r.status == "reserved":
            offered = ["start", "register_card"]
        elif r.status == "in_use":
            offered = ["end", "reunlock", "register_card", "forgotten_unlock", "forgotten_lock"]
        elif (
            r.status == "completed"
            and r.returned_at is not None
            and now - r.returned_at < dt.timedelta(minutes=30)  # the car judges the window
        ):
            offered = ["forgotten_unlock", "forgotten_lock"]
    result = None
    nonce = request.query_params.get("op", "")
    if NONCE.fullmatch(nonce):
        stored = site.once.get((who.account_id, nonce))
        if stored is not None and stored.get("reservation_id") == r.reservation_id:
            result = shown_result(site, request, stored)
    return {
        "controls": [
            {"name": n, "label": site.text(request, LABELS[n]), "nonce": secrets.token_hex(16)}
            for n in offered
        ],
        "op_result": result,
        "card_since": request.query_params.get("since", ""),
    }


def shown_result(site: PhoneSite, request: Request, stored: dict[str, Any]) -> dict[str, Any]:
    lang = site.lang(request)
    data = stored.get("data") or {}
    failed = [str(c) for c in data.get("failed", [])] if isinstance(data, dict) else []
    code = str(stored.get("code", ""))
    if stored.get("timeout"):
        text = site.text(request, "op_timeout")
    elif stored.get("ok"):
        key = f"code_{code}"
        text = site.text(request, key) if key in TEXTS else site.text(request, "op_ok")
    elif "message_en" in stored:
        text = stored["message_ja"] if lang == "ja" else stored["message_en"]
    else:
        text = f"{site.text(request, 'op_refused')} ({code})"
    checks = []
    for c in failed:
        key = f"check_{c}"
        checks.append({"check": c, "text": site.text(request, key) if key in TEXTS else c})
    return {
        "name": stored.get("name", ""),
        "ok": bool(stored.get("ok")),
        "code": code,
        "timeout": bool(stored.get("timeout")),
        "text": text,
        "failed": checks,
        "waiting_for_card": bool(stored.get("ok")) and code == "registration_started",
    }


def add_routes(routes: APIRouter, site: PhoneSite) -> None:
    site.texts.update(TEXTS)
    cloud = site.cloud
    once = site.once

    @routes.post("/reservations/{reservation_id}/operations/{name}")
    def operate(
        request: Request,
        reservation_id: str,
        name: str,
        csrf: Csrf = None,
        nonce: Annotated[str, Form(max_length=64)] = "",
    ) -> Response:
        site.checked(request, csrf)
        who = site.caller(request)
        with site.refusals():
            cloud.reservation(who, reservation_id)  # someone else's: 404, nothing sent
            if name not in OPERATIONS:
                raise Refused(404, "unknown_operation", f"no operation {name!r}")
            if not NONCE.fullmatch(nonce):
                raise Refused(
                    422,
                    "no_nonce",
                    "the form is missing its one-time code; reload the page",
                    "フォームが古くなっています。ページを読み込み直してください",
                )
        since = cloud.clock().timestamp()

        def send() -> dict[str, Any]:
            base = {"reservation_id": reservation_id, "name": name}
            try:
                result = cloud.operate(who, reservation_id, name)
            except Refused as exc:
                return {
                    **base,
                    "ok": False,
                    "code": exc.code,
                    "timeout": exc.status == 504,
                    "status": exc.status,
                    "message_en": exc.message_en,
                    "message_ja": exc.message_ja,
                }
            return {**base, **result, "timeout": False}

        once.run((who.account_id, nonce), send)
        extra = f"&since={since:.0f}" if name == "register_card" else ""
        return site.go(f"/reservations/{reservation_id}?op={nonce}{extra}#op-result")

    @routes.get("/reservations/{reservation_id}/cards.json")
    def cards(request: Request, reservation_id: str, since: float = 0.0) -> Response:
        """The caller's cards registered since `since` (epoch seconds), newest first."""
        who = site.caller(request)
        try:
            view = cloud.reservation(who, reservation_id)
        except Refused:
            return JSONResponse({"error": "not_found"}, status_code=404)
        found = [
            {"card": c.card_hash[:16], "registered_at": site.local(c.registered_at)}
            for c in reversed(cloud.store.list_cards(driver_id=view.reservation.driver_id))
            if c.registered_at.timestamp() >= since
        ]
        return JSONResponse({"cards": found}, headers={"cache-control": "no-store"})

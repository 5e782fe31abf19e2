"""The phone site's trips, account and damage reports.

- GET /trips (P-WEB-3): past trips with each invoice line by line, and the penalties in force
  (C-PEN-1).
- GET /account, POST /account/email, POST /account/apply (P-WEB-6): member and driver details,
  the e-mail address changed directly, an application for the rest (decided on the console).
- GET|POST /reservations/{id}/damage, GET /damage-photos/{id} (P-WEB-7): a report of damage,
  dirt or a flat tyre before driving, with photos (multipart, size-capped, JPEG/PNG/WebP by
  their bytes).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from cloud.auth import Caller
from cloud.driver_requests import MAX_PHOTO_BYTES, MAX_PHOTOS
from cloud.service import Refused
from cloud.store.driver_pages import APPLICATION_FIELDS, DAMAGE_KINDS
from cloud.web.phone_base import Csrf, PhoneSite

TEXTS = {
    "past_trips": ("利用履歴", "Past trips"),
    "no_trips": ("利用履歴はありません", "No past trips"),
    "invoice": ("請求明細", "Invoice"),
    "no_invoice": ("請求はまだありません", "Not invoiced yet"),
    "total": ("合計", "Total"),
    "penalties": ("ペナルティ", "Penalties"),
    "no_penalties": ("現在ペナルティはありません", "No penalties in force"),
    "penalty_limit": (
        "{first} から {until} の前日まで、予約は {n} 件までに制限されています（無断延長）",
        "From {first} until before {until}: at most {n} open reservation(s) (unauthorised "
        "extension)",
    ),
    "penalty_count": (
        "過去1年の無断延長: {n} 回",
        "Unauthorised extensions in the last year: {n}",
    ),
    "revoked": ("会員資格が取り消されています", "The membership has been revoked"),
    "member": ("会員", "Member"),
    "driver": ("運転者", "Driver"),
    "name": ("氏名", "Name"),
    "email": ("メールアドレス", "E-mail address"),
    "licence_expiry": ("免許証の有効期限", "Licence valid until"),
    "cards": ("登録カード", "Registered cards"),
    "change_email": ("メールアドレスを変更", "Change the e-mail address"),
    "email_changed": ("メールアドレスを変更しました", "Your e-mail address was changed"),
    "change_password": ("パスワードを変更", "Change the password"),
    "apply": ("変更の申請", "Apply for a change"),
    "apply_why": (
        "住所・免許証などの変更は申請を受けて事務局が確認します",
        "The office checks changes of your address, licence and other details",
    ),
    "field_name": ("氏名", "Name"),
    "field_address": ("住所", "Address"),
    "field_phone": ("電話番号", "Phone"),
    "field_licence_number": ("免許証番号", "Licence number"),
    "field_licence_expiry": ("免許証の有効期限 (YYYY-MM-DD)", "Licence valid until (YYYY-MM-DD)"),
    "note": ("備考", "Note"),
    "send": ("送信", "Send"),
    "applied": ("申請を受け付けました", "Your application was received"),
    "applications": ("申請の状況", "Your applications"),
    "app_pending": ("確認中", "pending"),
    "app_approved": ("承認", "approved"),
    "app_rejected": ("却下", "rejected"),
    "member_no_account_change": (
        "会員IDでは変更できません。運転者IDでログインしてください",
        "Log in with a driver ID to change details",
    ),
    "damage_title": ("車両の状態を報告", "Report the car's condition"),
    "damage_why": (
        "利用前にキズ・汚れ・パンクなどを見つけたら、写真を添えて報告してください",
        "Found damage, dirt or a flat tyre before driving? Report it with photos",
    ),
    "kind": ("種類", "What"),
    "kind_damage": ("キズ・へこみ", "Damage"),
    "kind_dirt": ("汚れ", "Dirt"),
    "kind_flat_tyre": ("パンク", "Flat tyre"),
    "kind_other": ("その他", "Other"),
    "photos": (
        "写真（JPEG・PNG・WebP、{n}枚まで、1枚{mb}MBまで）",
        "Photos (JPEG, PNG or WebP; up to {n}, {mb} MB each)",
    ),
    "reports": ("これまでの報告", "Reports so far"),
    "photo_count": ("写真 {n} 枚", "{n} photo(s)"),
}


def _yen(n: int) -> str:
    return f"-¥{-n:,}" if n < 0 else f"¥{n:,}"


def add_routes(routes: APIRouter, site: PhoneSite) -> None:
    site.texts.update(TEXTS)
    cloud, requests = site.cloud, site.requests

    # ---- past trips and invoices --------------------------------------------------------

    @routes.get("/trips")
    def trips(request: Request) -> Response:
        who = site.caller(request)
        lang = site.lang(request)
        invoices: dict[str, list[Any]] = {}  # a trip's invoice and its adjustments (refuels)
        for i in cloud.invoices(who):
            if i.reservation_id:
                invoices.setdefault(i.reservation_id, []).append(i)
        rows = []
        for view in reversed(cloud.reservations(who, "past")):
            r = view.reservation
            issued = invoices.get(r.reservation_id, [])
            lines = []
            for inv in issued:
                for line in inv.lines:
                    label = line.get("label_ja" if lang == "ja" else "label_en", line["code"])
                    lines.append({"code": line["code"], "label": label, "yen": _yen(line["yen"])})
            rows.append(
                {
                    "id": r.reservation_id,
                    "car_id": r.car_id,
                    "start": site.local(r.start),
                    "end": site.local(r.end),
                    "returned": site.local(r.returned_at),
                    "status": r.status,
                    "invoice": issued[0].invoice_id if issued else None,
                    "lines": lines,
                    "total": _yen(sum(i.total for i in issued)) if issued else None,
                    "cancellation_fee": r.cancellation_fee,
                }
            )
        p = requests.penalties(who)
        context = {
            "who": who,
            "trips": rows,
            "revoked": p.revoked,
            "offences": p.offences_in_window,
            "limits": [
                {"first": lim.first.isoformat(), "until": lim.until.isoformat(), "n": lim.max_open}
                for lim in p.limits
            ],
        }
        return site.page(request, "trips.html", context)

    # ---- account ------------------------------------------------------------------------

    def account_page(
        request: Request,
        who: Caller,
        *,
        error: str | None = None,
        notice: str | None = None,
        status: int = 200,
    ) -> Response:
        member, driver, cards = requests.account(who)
        context: dict[str, Any] = {
            "who": who,
            "member": member,
            "driver": driver,
            "cards": [
                {"card": c.card_hash[:16], "registered": site.local(c.registered_at)} for c in cards
            ],
            "error": error,
            "notice": notice or request.query_params.get("done"),
            "fields": APPLICATION_FIELDS,
            "applications": [
                {
                    "id": a.application_id,
                    "fields": ", ".join(
                        f"{site.text(request, 'field_' + k)}: {v}" for k, v in a.fields.items()
                    ),
                    "status": a.status,
                    "created": site.local(a.created_at),
                    "reason": a.reason,
                }
                for a in reversed(requests.my_applications(who))
            ],
        }
        return site.page(request, "account.html", context, status=status)

    @routes.get("/account")
    def account(request: Request) -> Response:
        return account_page(request, site.caller(request))

    @routes.post("/account/email")
    def change_email(
        request: Request, csrf: Csrf = None, email: Annotated[str, Form(max_length=254)] = ""
    ) -> Response:
        site.checked(request, csrf)
        who = site.caller(request)
        try:
            requests.change_email(who, email)
        except Refused as exc:
            return account_page(request, who, error=site.message(request, exc), status=exc.status)
        return site.go("/account?done=email_changed")

    @routes.post("/account/apply")
    def apply(
        request: Request,
        csrf: Csrf = None,
        name: Annotated[str, Form(max_length=200)] = "",
        address: Annotated[str, Form(max_length=500)] = "",
        phone: Annotated[str, Form(max_length=40)] = "",
        licence_number: Annotated[str, Form(max_length=40)] = "",
        licence_expiry: Annotated[str, Form(max_length=10)] = "",
        note: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        site.checked(request, csrf)
        who = site.caller(request)
        fields = {
            "name": name,
            "address": address,
            "phone": phone,
            "licence_number": licence_number,
            "licence_expiry": licence_expiry,
        }
        try:
            requests.apply_for_change(who, fields, note)
        except Refused as exc:
            return account_page(request, who, error=site.message(request, exc), status=exc.status)
        return site.go("/account?done=applied")

    # ---- damage reports -----------------------------------------------------------------

    def damage_page(
        request: Request, who: Caller, reservation_id: str, error: str | None, status: int
    ) -> Response:
        with site.refusals():
            view = cloud.reservation(who, reservation_id)
            reports = requests.damage_reports(who, reservation_id)
        context = {
            "who": who,
            "rid": reservation_id,
            "car_id": view.reservation.car_id,
            "kinds": DAMAGE_KINDS,
            "error": error,
            "max_photos": MAX_PHOTOS,
            "max_mb": MAX_PHOTO_BYTES // (1024 * 1024),
            "reports": [
                {
                    "id": rep.report_id,
                    "kind": rep.kind,
                    "note": rep.note,
                    "at": site.local(rep.created_at),
                    "photos": [p.photo_id for p in rep.photos],
                }
                for rep in reports
            ],
        }
        return site.page(request, "damage.html", context, status=status)

    @routes.get("/reservations/{reservation_id}/damage")
    def damage_form(request: Request, reservation_id: str) -> Response:
        return damage_page(request, site.caller(request), reservation_id, None, 200)

    @routes.post("/reservations/{reservation_id}/damage")
    def report_damage(
        request: Request,
        reservation_id: str,
        csrf: Csrf = None,
        kind: Annotated[str, Form(max_length=20)] = "damage",
        note: Annotated[str, Form(max_length=2000)] = "",
        photos: Annotated[list[UploadFile] | None, File()] = None,
    ) -> Response:
        site.checked(request, csrf)
        who = site.caller(request)
        datas: list[bytes] = []
        for upload in photos or []:
            # the upload is spooled to disk; never more than the cap read into memory
            datas.append(upload.file.read(MAX_PHOTO_BYTES + 1))
        try:
            requests.report_damage(who, reservation_id, kind, note, datas)
        except Refused as exc:
            if exc.status == 404:
                with site.refusals():
                    raise
            return damage_page(request, who, reservation_id, site.message(request, exc), exc.status)
        return site.go(f"/reservations/{reservation_id}?done=reported")

    @routes.get("/damage-photos/{photo_id}")
    def damage_photo(request: Request, photo_id: int) -> Response:
        who = site.caller(request)
        with site.refusals():
            content_type, data = requests.damage_photo(who, photo_id)
        return Response(
            data,
            media_type=content_type,
            headers={"cache-control": "private, no-store", "x-content-type-options": "nosniff"},
        )

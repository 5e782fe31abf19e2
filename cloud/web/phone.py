"""The drivers' phone site (SPEC §6): log in, the first login's new password, my reservations;
the rest in `phone_booking` (book, quote, reserve), `phone_reservation` (a reservation, change,
cancel, extend), `phone_car` (the car controls), `phone_account` (trips and invoices, account,
damage reports), sharing `phone_base`.

Routes here at the site's root (`/`, `/login`, `/password`, `/logout`); every page goes through the
service (`cloud.service.Cloud`) with the signed-in driver as the caller, so the API's rules hold
here word for word. A page a driver may not see answers as if it did not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from cloud.auth import AuthError, Tokens
from cloud.service import Cloud, Refused
from cloud.web.i18n import Texts
from cloud.web.phone_base import Csrf, LoggedOut, PhoneSite, Shown
from cloud.web.session import CsrfError

TEXTS = Texts(
    {
        "site": ("カーシェア", "Car sharing"),
        "login": ("ログイン", "Log in"),
        "logout": ("ログアウト", "Log out"),
        "account_id": ("ドライバーID または 会員ID", "Driver ID or member ID"),
        "password": ("パスワード", "Password"),
        "bad_login": ("IDまたはパスワードが違います", "Unknown ID or wrong password"),
        "csrf": (
            "セキュリティトークンがありません。ページを読み込み直してください",
            "The form's security token is missing or wrong; reload the page",
        ),
        "new_password_title": ("新しいパスワード", "Choose a new password"),
        "new_password_why": (
            "初回ログインです。メールで届いた仮パスワードを、ご自身のパスワードに変更してください",
            "This is your first login: replace the initial password from the mail with your own",
        ),
        "current_password": ("現在のパスワード", "Current password"),
        "new_password": ("新しいパスワード (8文字以上)", "New password (8 characters or more)"),
        "new_password_again": ("新しいパスワード (確認)", "New password again"),
        "passwords_differ": ("確認用のパスワードが一致しません", "The two new passwords differ"),
        "save": ("保存", "Save"),
        "password_changed": ("パスワードを変更しました", "Your password was changed"),
        "my_reservations": ("ご予約", "My reservations"),
        "no_reservations": ("予約はありません", "No reservations"),
        "car": ("車両", "Car"),
        "from": ("開始", "From"),
        "until": ("終了", "Until"),
        "status": ("状態", "Status"),
        "fee": ("料金", "Fee"),
        "status_reserved": ("予約中", "reserved"),
        "status_in_use": ("利用中", "in use"),
        "status_completed": ("返却済", "returned"),
        "status_cancelled": ("取消", "cancelled"),
        "member_view": (
            "会員IDでのログインです: 予約はドライバーIDで行います",
            "Logged in with a member ID: reserve with a driver ID",
        ),
        "signed_in_as": ("ログイン中: {who}", "Signed in as {who}"),
    }
)


def add_phone_site(app: FastAPI, cloud: Cloud, tokens: Tokens, *, secure: bool = False) -> None:
    from cloud.web import phone_account, phone_booking, phone_car, phone_reservation

    site = PhoneSite(cloud, tokens, TEXTS, secure)
    sessions, pages = site.sessions, site.pages
    local, caller, checked, go = site.local, site.caller, site.checked, site.go
    app.mount("/static", StaticFiles(packages=[("cloud.web", "static")]), name="static")
    # every page: HTML, and none of it in the API's OpenAPI document
    routes = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

    def address(request: Request) -> str | None:
        return request.client.host if request.client else None

    @app.exception_handler(LoggedOut)
    async def on_logged_out(request: Request, exc: LoggedOut) -> Response:
        return go("/login")

    @app.exception_handler(CsrfError)
    async def on_csrf(request: Request, exc: CsrfError) -> Response:
        return pages.page(request, "error.html", {"message_key": "csrf"}, status=403)

    @app.exception_handler(Shown)
    async def on_shown(request: Request, exc: Shown) -> Response:
        context = {
            "message": site.message(request, exc.refused),
            "code": exc.refused.code,
            "back": exc.back,
        }
        return pages.page(request, "error.html", context, status=exc.refused.status)

    # ---- logging in ------------------------------------------------------------------------

    @routes.get("/login")
    def login_page(request: Request) -> Response:
        return pages.page(request, "login.html", {"error": None, "account_id": ""})

    @routes.post("/login")
    def login(
        request: Request,
        csrf: Csrf = None,
        account_id: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        checked(request, csrf)
        try:
            who = cloud.login(account_id.strip(), password, address(request))
        except AuthError:
            context = {"error": site.text(request, "bad_login"), "account_id": account_id}
            return pages.page(request, "login.html", context, status=401)
        except Refused as exc:
            context = {"error": site.message(request, exc), "account_id": account_id}
            return pages.page(request, "login.html", context, status=exc.status)
        response = go("/password" if cloud.password_must_change(who) else "/")
        sessions.open(response, tokens.issue(who, cloud.clock().timestamp()), tokens.lifetime)
        return response

    @routes.post("/logout")
    def logout(request: Request, csrf: Csrf = None) -> Response:
        checked(request, csrf)
        response = go("/login")
        sessions.close(response)
        return response

    @routes.get("/password")
    def password_page(request: Request) -> Response:
        who = caller(request)
        context = {"error": None, "forced": cloud.password_must_change(who), "who": who}
        return pages.page(request, "password.html", context)

    @routes.post("/password")
    def change_password(
        request: Request,
        csrf: Csrf = None,
        current: Annotated[str, Form(max_length=256)] = "",
        new: Annotated[str, Form(max_length=256)] = "",
        again: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        checked(request, csrf)
        who = caller(request)
        error = None
        if new != again:
            error = site.text(request, "passwords_differ")
        else:
            try:
                cloud.change_password(who, current, new)
            except Refused as exc:
                error = site.message(request, exc)
        if error is not None:
            context = {"error": error, "forced": cloud.password_must_change(who), "who": who}
            return pages.page(request, "password.html", context, status=422)
        return go("/?changed=password")

    # ---- the driver's home -----------------------------------------------------------------

    @routes.get("/")
    def home(request: Request) -> Response:
        who = caller(request)
        if cloud.password_must_change(who):
            return go("/password")
        views = cloud.reservations(who, "upcoming")
        rows: list[dict[str, Any]] = [
            {
                "id": v.reservation.reservation_id,
                "car_id": v.reservation.car_id,
                "start": local(v.reservation.start),
                "end": local(v.reservation.end),
                "status": v.reservation.status,
                "fee": v.fee,
            }
            for v in views
        ]
        context = {
            "who": who,
            "reservations": rows,
            "notice": "password_changed" if request.query_params.get("changed") else None,
        }
        return pages.page(request, "home.html", context)

    phone_booking.add_routes(routes, site)
    phone_reservation.add_routes(routes, site)
    phone_car.add_routes(routes, site)
    phone_account.add_routes(routes, site)
    app.include_router(routes)

"""The operator console's pages (SPEC §7), under `/console/`: log in; the fleet, live by
server-sent events (O-FLEET-1); one car with its reservations, commands and event timeline,
exportable as CSV (O-CAR-1); alerts (O-ALERT-1); staff accounts and the audit log (O-ROLE-1).
Every page goes through `cloud.console.Console` with the signed-in staff member as the caller.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from cloud import staff as roles
from cloud.auth import AuthError, Tokens
from cloud.console import TRIP_STATES, Console, FleetFilter
from cloud.service import Refused
from cloud.web.console_base import ConsoleLoggedOut, ConsoleShown, ConsoleSite
from cloud.web.i18n import Texts, language
from cloud.web.phone_base import Csrf

TEXTS = Texts(
    {
        "site": ("運用コンソール", "Operator console"),
        "login": ("ログイン", "Log in"),
        "logout": ("ログアウト", "Log out"),
        "staff_id": ("スタッフID", "Staff ID"),
        "password": ("パスワード", "Password"),
        "bad_login": ("IDまたはパスワードが違います", "Unknown ID or wrong password"),
        "csrf": (
            "セキュリティトークンがありません。ページを読み込み直してください",
            "The form's security token is missing or wrong; reload the page",
        ),
        "signed_in_as": ("{who} ({role})", "{who} ({role})"),
        "back": ("戻る", "Back"),
        "fleet": ("車両一覧", "Fleet"),
        "alerts": ("アラート", "Alerts"),
        "staff": ("スタッフ", "Staff"),
        "audit": ("監査ログ", "Audit log"),
        "admin": ("管理", "Admin"),
        "station": ("ステーション", "Station"),
        "all": ("すべて", "All"),
        "state": ("状態", "State"),
        "offline_only": ("オフラインのみ", "Offline only"),
        "filter": ("絞り込み", "Filter"),
        "cars_shown": ("台", "cars"),
        "car": ("車両", "Car"),
        "doors": ("ドア", "Doors"),
        "key": ("キー", "Key"),
        "brake": ("サイドブレーキ", "Brake"),
        "engine": ("エンジン", "Engine"),
        "fuel": ("燃料", "Fuel"),
        "odometer": ("走行距離", "Odometer"),
        "position": ("位置", "Position"),
        "firmware": ("ソフト", "Software"),
        "online": ("通信", "Link"),
        "last_contact": ("最終通信", "Last contact"),
        "live": ("自動更新中", "Live"),
        "reservations": ("予約", "Reservations"),
        "driver": ("ドライバー", "Driver"),
        "from": ("開始", "From"),
        "until": ("終了", "Until"),
        "status": ("状態", "Status"),
        "commands": ("操作", "Commands"),
        "result": ("結果", "Result"),
        "events": ("イベント", "Events"),
        "car_time": ("車両時刻", "Car time"),
        "cloud_time": ("受信時刻", "Cloud time"),
        "type": ("種類", "Type"),
        "outcome": ("処理", "Outcome"),
        "data": ("内容", "Data"),
        "csv": ("CSVで書き出す", "Export CSV"),
        "no_alerts": ("未確認のアラートはありません", "No open alerts"),
        "acknowledge": ("確認済みにする", "Acknowledge"),
        "raised_at": ("発生", "Raised"),
        "message": ("内容", "Message"),
        "name": ("氏名", "Name"),
        "role": ("権限", "Role"),
        "window": ("作業時間", "Window"),
        "add_staff": ("スタッフを追加", "Add staff"),
        "add": ("追加", "Add"),
        "disable": ("無効にする", "Disable"),
        "enable": ("有効にする", "Enable"),
        "disabled": ("無効", "disabled"),
        "who": ("誰が", "Who"),
        "when": ("いつ", "When"),
        "what": ("何を", "What"),
        "target": ("対象", "Target"),
        "inside": ("ステーション内", "at station"),
        "outside": ("ステーション外", "away"),
        "yes": ("あり", "yes"),
        "no": ("なし", "no"),
        "on": ("オン", "on"),
        "off": ("オフ", "off"),
        "locked": ("施錠", "locked"),
        "unlocked": ("解錠", "unlocked"),
        "open_doors": ("開: {doors}", "open: {doors}"),
        "is_online": ("オンライン", "online"),
        "is_offline": ("オフライン", "offline"),
        "immobilised": ("始動禁止中", "immobilised"),
        "service_mode": ("整備モード", "service mode"),
        "cmd_lock": ("施錠", "Lock"),
        "cmd_unlock": ("解錠", "Unlock"),
        "cmd_immobilise": ("始動禁止", "Immobilise"),
        "cmd_release": ("始動禁止を解除", "Release"),
        "cmd_operator_end": ("代理で返却", "End the trip"),
        "cmd_locate": ("位置を確認", "Locate"),
        "cmd_service_mode_on": ("整備モード開始", "Service mode on"),
        "cmd_service_mode_off": ("整備モード終了", "Service mode off"),
        "cmd_self_test": ("セルフテスト", "Self-test"),
        "role_operator": ("オペレーター", "operator"),
        "role_viewer": ("閲覧のみ", "viewer"),
        "role_technician": ("技術者", "technician"),
        "state_idle": ("待機", "idle"),
        "state_unlocked": ("解錠済", "unlocked"),
        "state_in_use": ("利用中", "in use"),
        "state_returning": ("返却中", "returning"),
        "state_forgotten_item_window": ("忘れ物受付", "forgotten item"),
        "state_security_locked": ("セキュリティ施錠", "security locked"),
        "state_unknown": ("未報告", "no report"),
    }
)
# The car page's buttons: (button, command, args)
BUTTONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("lock", "lock", {}),
    ("unlock", "unlock", {}),
    ("immobilise", "immobilise", {}),
    ("release", "release", {}),
    ("operator_end", "operator_end", {}),
    ("locate", "locate", {}),
    ("service_mode_on", "service_mode", {"on": True}),
    ("service_mode_off", "service_mode", {"on": False}),
    ("self_test", "self_test", {}),
)
EVENT_COLUMNS = ("seq", "type", "car_time", "cloud_time", "outcome", "data")


def add_console(
    app: FastAPI, console: Console, tokens: Tokens, *, secure: bool = False,
    published: Callable[[], list[str]] | None = None,
) -> None:  # fmt: skip
    """The console's pages; `published` lists the releases the cloud serves (None: no update
    repository)."""
    from cloud.fleet_feed import FleetFeed
    from cloud.web import console_accounts, console_admin, console_updates

    site = ConsoleSite(console, tokens, TEXTS, secure)
    feed = FleetFeed(console.store, console.row)
    app.state.fleet_feed = feed
    app.router.on_shutdown.append(feed.close)
    store, sessions, go, local = console.store, site.sessions, site.go, site.local
    routes = APIRouter(
        prefix="/console", include_in_schema=False, default_response_class=HTMLResponse
    )

    @app.exception_handler(ConsoleLoggedOut)
    async def on_logged_out(request: Request, exc: ConsoleLoggedOut) -> Response:
        return go("/console/login")

    @app.exception_handler(ConsoleShown)
    async def on_shown(request: Request, exc: ConsoleShown) -> Response:
        context = {"message": exc.message, "code": exc.code, "back": exc.back}
        return site.page(request, "error.html", context, status=exc.status)

    # ---- logging in --------------------------------------------------------------------------

    @routes.get("/login")
    def login_page(request: Request) -> Response:
        return site.page(request, "login.html", {"error": None, "staff_id": ""})

    @routes.post("/login")
    def login(
        request: Request,
        csrf: Csrf = None,
        staff_id: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        site.checked(request, csrf)
        address = request.client.host if request.client else None
        try:
            who = console.login(staff_id.strip(), password, address)
        except AuthError:
            context = {"error": site.text(request, "bad_login"), "staff_id": staff_id}
            return site.page(request, "login.html", context, status=401)
        except Refused as exc:
            message = exc.message_ja if language(request) == "ja" else exc.message_en
            context = {"error": message, "staff_id": staff_id}
            return site.page(request, "login.html", context, status=exc.status)
        response = go("/console/")
        sessions.open(response, tokens.issue(who, console.cloud.clock().timestamp()), 12 * 3600)
        return response

    @routes.post("/logout")
    def logout(request: Request, csrf: Csrf = None) -> Response:
        site.checked(request, csrf)
        response = go("/console/login")
        sessions.close(response)
        return response

    # ---- the fleet ---------------------------------------------------------------------------

    def fleet_filter(request: Request) -> FleetFilter:
        q = request.query_params
        state = q.get("state") or None
        if state is not None and state not in TRIP_STATES:
            raise ConsoleShown(422, "bad_filter", f"state: one of {', '.join(TRIP_STATES)}")
        return FleetFilter(q.get("station") or None, state, q.get("offline") == "1")

    @routes.get("/")
    def fleet(request: Request) -> Response:
        who, me = site.staff(request)
        if not roles.sees_fleet(me):
            return go(f"/console/cars/{me.car_id}")
        only = fleet_filter(request)
        with site.refusals(request):
            # every car of the station is on the page; those the filter leaves out are hidden,
            # so a car that comes to match appears live
            rows = console.fleet(who, FleetFilter(station_id=only.station_id))
        for row in rows:
            row["shown"] = only.matches(row)
        context = {
            "rows": rows,
            "shown": sum(1 for r in rows if r["shown"]),
            "since": max((r["seq"] for r in rows), default=0),
            "stations": store.list_stations(),
            "states": TRIP_STATES,
            "only": only,
        }
        return site.page(request, "fleet.html", context, staff=me)

    @routes.get("/fleet/stream")
    def fleet_stream(request: Request, since: int = 0, car: str | None = None) -> Response:
        """The fleet page's live rows, or with `car` the one row of that car's page."""
        who = site.caller(request)
        with site.refusals(request):
            if car is None:
                console.require(who, "fleet")
            else:
                console.require(who, "car", car)
        station = fleet_filter(request).station_id

        def visible(row: dict[str, Any]) -> bool:
            return (station is None or row["station_id"] == station) and (
                car is None or row["car_id"] == car
            )

        return StreamingResponse(
            feed.stream(since, visible, request.is_disconnected),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    # ---- one car -----------------------------------------------------------------------------

    def car_page(
        request: Request, car_id: str, result: dict[str, Any] | None = None, status: int = 200
    ) -> Response:
        who, me = site.staff(request)
        with site.refusals(request):
            row = console.car(who, car_id)
            reservations = console.reservations(who, car_id)
            events = console.events(who, car_id)[-200:]
        now = console.cloud.clock()
        buttons = [b for b, name, _ in BUTTONS
                   if roles.refusal(me, f"command:{name}", car_id, now) is None]  # fmt: skip
        context = {
            "car": row,
            "reservations": [reservation_row(r) for r in reservations],
            "events": [event_row(e) for e in reversed(events)],
            "buttons": buttons,
            "result": result,
        }
        return site.page(request, "car.html", context, status=status, staff=me)

    def reservation_row(r: Any) -> dict[str, Any]:
        return {
            "id": r.reservation_id,
            "driver_id": r.driver_id,
            "start": local(r.start),
            "end": local(r.end),
            "status": r.status,
        }

    def event_row(e: Any) -> dict[str, Any]:
        return {
            "seq": e.seq,
            "type": e.type,
            "car_time": local(e.at_time),
            "cloud_time": local(e.received_at),
            "outcome": e.outcome or "",
            "data": json.dumps(e.data, ensure_ascii=False, sort_keys=True),
        }

    @routes.get("/cars/{car_id}")
    def car(request: Request, car_id: str) -> Response:
        return car_page(request, car_id)

    @routes.post("/cars/{car_id}/commands/{button}")
    def command(request: Request, car_id: str, button: str, csrf: Csrf = None) -> Response:
        site.checked(request, csrf)
        who, _ = site.staff(request)
        found = next((b for b in BUTTONS if b[0] == button), None)
        if found is None:
            raise ConsoleShown(404, "unknown_command", f"no command {button!r}")
        _, name, args = found
        try:
            result = console.command(who, car_id, name, args)
        except Refused as exc:
            if exc.status == 403:
                with site.refusals(request, back=f"/console/cars/{car_id}"):
                    raise
            message = exc.message_ja if language(request) == "ja" else exc.message_en
            result = {"ok": False, "code": exc.code, "message": message, "data": {}}
        return car_page(request, car_id, {"button": button, **result})

    @routes.get("/cars/{car_id}/events.csv")
    def events_csv(request: Request, car_id: str) -> Response:
        who = site.caller(request)
        with site.refusals(request):
            events = console.events(who, car_id)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(EVENT_COLUMNS)
        for e in events:
            row = event_row(e)
            writer.writerow([row[c] for c in EVENT_COLUMNS])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{car_id}-events.csv"'},
        )

    # ---- alerts, staff, audit ----------------------------------------------------------------

    @routes.get("/alerts")
    def alerts(request: Request) -> Response:
        who, me = site.staff(request)
        with site.refusals(request):
            listed = console.alerts(who, open_only=request.query_params.get("all") != "1")
        rows = [{"alert": a, "raised_at": local(a.raised_at)} for a in listed]
        return site.page(request, "alerts.html", {"alerts": rows}, staff=me)

    @routes.post("/alerts/{alert_id}/acknowledge")
    def acknowledge(request: Request, alert_id: int, csrf: Csrf = None) -> Response:
        site.checked(request, csrf)
        who, _ = site.staff(request)
        with site.refusals(request, back="/console/alerts"):
            console.acknowledge_alert(who, alert_id)
        return go("/console/alerts")

    @routes.get("/staff")
    def staff_page(request: Request) -> Response:
        who, me = site.staff(request)
        with site.refusals(request):
            members = console.list_staff(who)
        rows = [
            {"s": s, "window": f"{local(s.window_start)} – {local(s.window_end)}"
             if s.window_start else ""}
            for s in members
        ]  # fmt: skip
        context = {"members": rows, "cars": store.list_cars(), "roles": ("operator", "viewer",
                   "technician")}  # fmt: skip
        return site.page(request, "staff.html", context, staff=me)

    @routes.post("/staff")
    def add_staff(
        request: Request,
        csrf: Csrf = None,
        staff_id: Annotated[str, Form(max_length=64)] = "",
        name: Annotated[str, Form(max_length=200)] = "",
        role: Annotated[str, Form(max_length=20)] = "",
        password: Annotated[str, Form(max_length=256)] = "",
        car_id: Annotated[str, Form(max_length=64)] = "",
        window_start: Annotated[str, Form(max_length=40)] = "",
        window_end: Annotated[str, Form(max_length=40)] = "",
    ) -> Response:
        site.checked(request, csrf)
        who, _ = site.staff(request)
        with site.refusals(request, back="/console/staff"):
            window = None
            if role == "technician":
                window = (
                    site.instant(window_start, "window_start"),
                    site.instant(window_end, "window_end"),
                )
            console.add_staff(
                who, staff_id.strip(), name, role, password,
                car_id if role == "technician" else None, window,
            )  # fmt: skip
        return go("/console/staff")

    @routes.post("/staff/{staff_id}/{action}")
    def enable_staff(request: Request, staff_id: str, action: str, csrf: Csrf = None) -> Response:
        site.checked(request, csrf)
        who, _ = site.staff(request)
        if action not in ("disable", "enable"):
            raise ConsoleShown(404, "unknown_action", f"no action {action!r}")
        with site.refusals(request, back="/console/staff"):
            console.set_staff_disabled(who, staff_id, action == "disable")
        return go("/console/staff")

    @routes.get("/audit")
    def audit(request: Request) -> Response:
        who, me = site.staff(request)
        with site.refusals(request):
            entries = console.audit_log(who)
        rows = [{"e": e, "at": local(e.at), "detail": json.dumps(e.detail, ensure_ascii=False)}
                for e in entries]  # fmt: skip
        return site.page(request, "audit.html", {"entries": rows}, staff=me)

    console_admin.add_routes(routes, site)
    console_accounts.add_routes(routes, site)
    console_updates.add_routes(routes, site, published)
    app.include_router(routes)

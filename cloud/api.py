"""The phone site's HTTP/JSON API (FastAPI): log in, reserve, change, cancel, extend, list,
history, quotes, invoices and the remote car operations. OpenAPI at `/openapi.json`.

Every refusal is a JSON body `{"error": {"code", "message", "message_ja", ...}}` with a 4xx
status; malformed JSON, missing fields, wrong types and unknown fields are refused before any
operation runs, so nothing changes.
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.auth import DRIVER_KINDS, AuthError, Caller, Tokens
from cloud.body_limit import DEFAULT_LIMIT, BodyLimit
from cloud.decision import Decision
from cloud.driver_requests import MAX_PHOTO_BYTES, MAX_PHOTOS
from cloud.fees import reservation_fee
from cloud.service import Cloud, Refused, ReservationView
from cloud.store import NotFound
from cloud.store import records as rec
from cloud.update_repo import UpdateRepo

API_VERSION = "1"
# Routes whose bodies may be larger than a few kB (path pattern, bytes); every other: 8 kB.
# A damage report carries its photos (P-WEB-7): up to MAX_PHOTOS of MAX_PHOTO_BYTES, as a form
# upload or as base64 in JSON (a third larger), and a little room for the rest.
_REPORT_BYTES = MAX_PHOTOS * MAX_PHOTO_BYTES * 4 // 3 + 64 * 1024
LARGER_BODIES: list[tuple[str, int]] = [
    (r"/reservations/[^/]+/damage", _REPORT_BYTES),
    (r"/v1/damage-reports", _REPORT_BYTES),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable reason (e.g. car_buffer, grid)")
    message: str = Field(description="for people, in English")
    message_ja: str = Field(description="for people, in Japanese")
    model_config = ConfigDict(extra="allow")  # e.g. fields, fee, conflict_id


class ErrorBody(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (401, "not logged in, or the token expired"),
        (403, "not allowed for this account (e.g. a member ID reserving)"),
        (404, "no such reservation of yours, car or operation"),
        (409, "conflicts with another reservation or a newer state"),
        (413, "the request body is larger than the route takes (a few kB)"),
        (422, "malformed request, or a booking rule refuses it"),
        (429, "too many wrong passwords lately: wait `retry_after` seconds"),
        (503, "the car cannot be reached (offline, or no link to the cars)"),
        (504, "the car did not answer in time; the command expired"),
    )
}


class LoginBody(Body):
    account_id: str = Field(description="driver ID (11 characters) or member ID (8 characters)")
    password: str


class ReserveBody(Body):
    car_id: str
    start: AwareDatetime = Field(description="ISO 8601 with offset, on a 15-minute mark")
    end: AwareDatetime
    driver_id: str | None = Field(
        None, description="for an admin driver booking for another driver of the member"
    )


class ChangeBody(Body):
    start: AwareDatetime
    end: AwareDatetime


class CancelBody(Body):
    fee: int = Field(ge=0, description="the cancellation fee the driver was shown and accepts")


class ExtendBody(Body):
    end: AwareDatetime | None = Field(
        None, description="a later 15-minute mark; omitted: one step (+15 minutes)"
    )


class OperationBody(Body):
    args: dict[str, Any] = Field(default_factory=dict)


def create_app(cloud: Cloud, tokens: Tokens, updates: UpdateRepo | None = None) -> FastAPI:
    app = FastAPI(
        title="kagi cloud",
        version=API_VERSION,
        description="The phone site's operations on reservations and cars.",
        responses=ERRORS,
    )
    app.add_middleware(BodyLimit, default=DEFAULT_LIMIT, larger=LARGER_BODIES)
    bearer = HTTPBearer(auto_error=False)
    zone = cloud.policy.zone

    def local(t: dt.datetime | None) -> str | None:
        return None if t is None else t.astimezone(zone).isoformat()

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        if credentials is None:
            raise Refused(401, "no_token", "log in first: send Authorization: Bearer <token>")
        try:
            who = tokens.check(credentials.credentials, cloud.clock().timestamp())
        except AuthError as exc:
            raise Refused(401, exc.reason, str(exc)) from exc
        if who.kind not in DRIVER_KINDS:  # a staff token opens the console, not this API
            raise Refused(
                401,
                "not_a_driver_token",
                "a console token: log in with a driver or member ID",
                "コンソールのトークンです。ドライバーIDまたは会員IDでログインしてください",
            )
        return who

    Who = Annotated[Caller, Depends(caller)]

    def reservation_json(view: ReservationView) -> dict[str, Any]:
        r = view.reservation
        out: dict[str, Any] = {
            "id": r.reservation_id,
            "car_id": r.car_id,
            "driver_id": r.driver_id,
            "member_id": r.member_id,
            "start": local(r.start),
            "end": local(r.end),
            "status": r.status,
            "changes": r.change_count,
            "extensions": r.extension_count,
            "fee_yen": view.fee,
            "cancellation_fee_yen": r.cancellation_fee,
        }
        if view.history:
            out["history"] = [
                {
                    "at": local(c.at),
                    "kind": c.kind,
                    "old_start": local(c.old_start),
                    "old_end": local(c.old_end),
                    "new_start": local(c.new_start),
                    "new_end": local(c.new_end),
                }
                for c in view.history
            ]
        return out

    def decision_json(d: Decision) -> dict[str, Any]:
        return {
            "ok": d.ok,
            "code": d.code,
            "message": d.message_en,
            "message_ja": d.message_ja,
            "fee_yen": d.fee,
        }

    @app.exception_handler(Refused)
    async def on_refused(request: Request, exc: Refused) -> JSONResponse:
        body = {"code": exc.code, "message": exc.message_en, "message_ja": exc.message_ja}
        headers = (
            {"retry-after": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
        )
        return JSONResponse(
            {"error": {**body, **exc.extra}}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            fields.append({"field": where, "problem": err.get("msg", "invalid")})
        message = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        return JSONResponse(
            {
                "error": {
                    "code": "invalid_request",
                    "message": message,
                    "message_ja": f"リクエストが正しくありません: {message}",
                    "fields": fields,
                }
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "no_such_path", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"code": code, "message": str(exc.detail), "message_ja": str(exc.detail)}
        return JSONResponse({"error": body}, status_code=exc.status_code)

    @app.post("/v1/login", summary="Log in with a driver or member ID and password")
    def login(body: LoginBody, request: Request) -> dict[str, Any]:
        address = request.client.host if request.client else None
        try:
            who = cloud.login(body.account_id, body.password, address)
        except AuthError as exc:
            raise Refused(401, exc.reason, str(exc), "IDまたはパスワードが違います") from exc
        now = cloud.clock().timestamp()
        return {
            "token": tokens.issue(who, now),
            "expires_at": local(dt.datetime.fromtimestamp(now + tokens.lifetime, dt.UTC)),
            "account_id": who.account_id,
            "kind": who.kind,
            "member_id": who.member_id,
            "admin": who.admin,
            "password_must_change": cloud.password_must_change(who),
        }

    @app.get("/v1/cars", summary="The cars and their stations")
    def cars(who: Who) -> list[dict[str, Any]]:
        return [
            {
                "car_id": car.car_id,
                "name": car.name,
                "kind": car.kind,
                "station": {
                    "id": st.station_id,
                    "name": st.name,
                    "lat": st.lat,
                    "lon": st.lon,
                    "radius_m": st.radius_m,
                },
            }
            for car, st in cloud.cars()
        ]

    @app.post("/v1/quotes", summary="What a reservation would cost, and whether it is allowed")
    def quote(body: ReserveBody, who: Who) -> dict[str, Any]:
        d = cloud.quote(who, body.car_id, body.start, body.end, body.driver_id)
        out = decision_json(d)
        if d.ok:
            car = cloud.store.get_car(body.car_id)
            policy = cloud.policy.for_kind(car.kind)
            tf = reservation_fee(policy, body.start, body.end)
            ja, en = tf.describe(policy.fees.unit)
            out["breakdown"] = {"en": en, "ja": ja}
        return out

    @app.post("/v1/reservations", status_code=201, summary="Reserve a car (drivers only)")
    def reserve(body: ReserveBody, who: Who) -> dict[str, Any]:
        return reservation_json(
            cloud.reserve(who, body.car_id, body.start, body.end, body.driver_id)
        )

    @app.get("/v1/reservations", summary="Reservations the caller may see")
    def reservations(who: Who, when: str = "all") -> list[dict[str, Any]]:
        return [reservation_json(v) for v in cloud.reservations(who, when)]

    @app.get("/v1/reservations/{reservation_id}", summary="One reservation with its history")
    def reservation(reservation_id: str, who: Who) -> dict[str, Any]:
        return reservation_json(cloud.reservation(who, reservation_id))

    @app.patch("/v1/reservations/{reservation_id}", summary="Change a reservation's times")
    def change(reservation_id: str, body: ChangeBody, who: Who) -> dict[str, Any]:
        return reservation_json(cloud.change(who, reservation_id, body.start, body.end))

    @app.get(
        "/v1/reservations/{reservation_id}/cancellation",
        summary="What cancelling would cost now (show it before cancelling)",
    )
    def cancellation(reservation_id: str, who: Who) -> dict[str, Any]:
        return decision_json(cloud.cancellation(who, reservation_id))

    @app.post("/v1/reservations/{reservation_id}/cancel", summary="Cancel, accepting the fee")
    def cancel(reservation_id: str, body: CancelBody, who: Who) -> dict[str, Any]:
        return reservation_json(cloud.cancel(who, reservation_id, body.fee))

    @app.post(
        "/v1/reservations/{reservation_id}/extend",
        summary="Extend a running trip by 15 minutes or to a later mark",
    )
    def extend(reservation_id: str, body: ExtendBody, who: Who) -> dict[str, Any]:
        return reservation_json(cloud.extend(who, reservation_id, body.end))

    @app.post(
        "/v1/reservations/{reservation_id}/operations/{name}",
        summary="A remote operation on the car: start, end, reunlock, forgotten_unlock, "
        "forgotten_lock, register_card",
    )
    def operate(reservation_id: str, name: str, body: OperationBody, who: Who) -> dict[str, Any]:
        return cloud.operate(who, reservation_id, name, body.args)

    @app.get("/v1/invoices", summary="The caller's invoices")
    def invoices(who: Who) -> list[dict[str, Any]]:
        return [invoice_json(i) for i in cloud.invoices(who)]

    def invoice_json(inv: rec.Invoice) -> dict[str, Any]:
        return {
            "id": inv.invoice_id,
            "reservation_id": inv.reservation_id,
            "issued_at": local(inv.issued_at),
            "lines": list(inv.lines),
            "total_yen": inv.total,
        }

    @app.exception_handler(NotFound)
    async def on_not_found(request: Request, exc: NotFound) -> JSONResponse:
        body = {"code": f"unknown_{exc.kind}", "message": str(exc), "message_ja": str(exc)}
        return JSONResponse({"error": body}, status_code=404)

    from cloud.api_driver import add_driver_api  # damage reports, change applications

    add_driver_api(app, cloud, Who)

    from cloud.web.phone import add_phone_site  # the pages, over the same service

    add_phone_site(app, cloud, tokens)

    from cloud.api_console import add_console_api  # the operator console: API and pages
    from cloud.console import Console
    from cloud.web.console import add_console

    console = Console(cloud)
    add_console_api(app, console, tokens)
    add_console(app, console, tokens, published=None if updates is None else updates.versions)
    if updates is not None:
        from cloud.api_updates import add_update_routes  # the cars' releases (O-OTA-1)

        add_update_routes(app, updates)
    return app

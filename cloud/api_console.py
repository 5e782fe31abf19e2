"""The JSON API of the operator console (SPEC §7), beside `cloud.api`: staff login, the fleet,
one car with its events, operator commands, alerts, staff accounts and the audit log, through
`cloud.console.Console`. A staff token opens only these routes; a driver's token none of them."""

import datetime as dt
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from cloud.auth import AuthError, Caller, Tokens
from cloud.console import Console, FleetFilter
from cloud.service import Refused
from cloud.store.console import Alert, AuditEntry, Staff
from cloud.store.sync import CarEvent


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as cloud.api's bodies


class StaffLoginBody(Body):
    staff_id: str = Field(max_length=64)
    password: str = Field(max_length=256)


class CommandBody(Body):
    args: dict[str, Any] = Field(
        default_factory=dict, description='e.g. {"on": true} for service_mode'
    )


class StaffBody(Body):
    staff_id: str = Field(max_length=64)
    name: str = Field(max_length=200)
    role: str = Field(description="operator, viewer or technician")
    password: str = Field(max_length=256, description="at least 8 characters")
    car_id: str | None = Field(None, description="a technician's one car")
    window_start: dt.datetime | None = Field(None, description="a technician's window, ISO 8601")
    window_end: dt.datetime | None = None


class RefuelBody(Body):
    reservation_id: str = Field(max_length=64)
    at: dt.datetime = Field(description="when, from the receipt (ISO 8601 with its zone)")
    litres: float = Field(gt=0, le=1000)
    amount_yen: int = Field(ge=0)
    kind: str = Field("receipt", description="receipt (the car's fuel card) or emergency")


def event_json(e: CarEvent, local: Any) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "seq": e.seq,
        "type": e.type,
        "car_time": local(e.at_time),
        "cloud_time": local(e.received_at),
        "outcome": e.outcome,
        "data": e.data,
    }


def staff_json(s: Staff, local: Any) -> dict[str, Any]:
    return {
        "staff_id": s.staff_id,
        "name": s.name,
        "role": s.role,
        "car_id": s.car_id,
        "window_start": local(s.window_start),
        "window_end": local(s.window_end),
        "disabled": s.disabled,
    }


def alert_json(a: Alert, local: Any) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "kind": a.kind,
        "car_id": a.car_id,
        "message": a.message,
        "raised_at": local(a.raised_at),
        "acknowledged_at": local(a.acknowledged_at),
        "acknowledged_by": a.acknowledged_by,
    }


def audit_json(e: AuditEntry, local: Any) -> dict[str, Any]:
    return {
        "entry_id": e.entry_id,
        "at": local(e.at),
        "staff_id": e.staff_id,
        "action": e.action,
        "target": e.target,
        "detail": e.detail,
        "result": e.result,
    }


def add_console_api(app: FastAPI, console: Console, tokens: Tokens) -> None:
    cloud = console.cloud
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
        console.staff(who)  # a driver's token, or a disabled account: 401
        return who

    Who = Annotated[Caller, Depends(caller)]
    tag: list[str | Enum] = ["console"]

    @app.post("/v1/console/login", tags=tag, summary="Log in with a staff ID and password")
    def login(body: StaffLoginBody, request: Request) -> dict[str, Any]:
        address = request.client.host if request.client else None
        try:
            who = console.login(body.staff_id, body.password, address)
        except AuthError as exc:
            raise Refused(401, exc.reason, str(exc), "IDまたはパスワードが違います") from exc
        member = console.staff(who)
        return {"token": tokens.issue(who, cloud.clock().timestamp()), "role": member.role}

    @app.get("/v1/console/fleet", tags=tag, summary="Every car with its last reports")
    def fleet(
        who: Who, station: str | None = None, state: str | None = None, offline: bool = False
    ) -> list[dict[str, Any]]:
        return console.fleet(who, FleetFilter(station, state, offline))

    @app.get("/v1/console/cars/{car_id}", tags=tag, summary="One car's state and reservations")
    def car(car_id: str, who: Who) -> dict[str, Any]:
        row = console.car(who, car_id)
        row["reservations"] = [
            {
                "id": r.reservation_id,
                "driver_id": r.driver_id,
                "start": local(r.start),
                "end": local(r.end),
                "status": r.status,
            }
            for r in console.reservations(who, car_id)
        ]
        return row

    @app.get("/v1/console/cars/{car_id}/events", tags=tag, summary="The car's event timeline")
    def events(car_id: str, who: Who) -> list[dict[str, Any]]:
        return [event_json(e, local) for e in console.events(who, car_id)]

    @app.post(
        "/v1/console/cars/{car_id}/commands/{name}",
        tags=tag,
        summary="Send an operator command (lock, unlock, immobilise, release, operator_end, "
        "locate, service_mode, self_test) and get its one result",
    )
    def command(car_id: str, name: str, body: CommandBody, who: Who) -> dict[str, Any]:
        return console.command(who, car_id, name, body.args)

    @app.get("/v1/console/alerts", tags=tag, summary="The alerts (open ones unless all=true)")
    def alerts(who: Who, all: bool = False) -> list[dict[str, Any]]:
        return [alert_json(a, local) for a in console.alerts(who, open_only=not all)]

    @app.post("/v1/console/alerts/{alert_id}/acknowledge", tags=tag, summary="Acknowledge")
    def acknowledge(alert_id: int, who: Who) -> dict[str, Any]:
        return alert_json(console.acknowledge_alert(who, alert_id), local)

    @app.get("/v1/console/staff", tags=tag, summary="The staff accounts")
    def staff(who: Who) -> list[dict[str, Any]]:
        return [staff_json(s, local) for s in console.list_staff(who)]

    @app.post("/v1/console/staff", tags=tag, summary="Add a staff account")
    def add_staff(body: StaffBody, who: Who) -> dict[str, Any]:
        window = None
        if body.window_start is not None and body.window_end is not None:
            window = (body.window_start, body.window_end)
        added = console.add_staff(
            who, body.staff_id, body.name, body.role, body.password, body.car_id, window
        )
        return staff_json(added, local)

    @app.post(
        "/v1/console/refuels",
        tags=tag,
        summary="Record a refuel from its receipt (discount) or an emergency one (reimbursed)",
    )
    def refuel(body: RefuelBody, who: Who) -> dict[str, Any]:
        refuel, adjustment = console.record_refuel(
            who, body.reservation_id, at=body.at, litres=body.litres,
            amount_yen=body.amount_yen, kind=body.kind,
        )  # fmt: skip
        return {
            "refuel_id": refuel.refuel_id,
            "kind": refuel.kind,
            "adjustment": None
            if adjustment is None
            else {"invoice_id": adjustment.invoice_id, "lines": list(adjustment.lines),
                  "total_yen": adjustment.total},
        }  # fmt: skip

    @app.get("/v1/console/audit", tags=tag, summary="The audit log, newest first")
    def audit(who: Who) -> list[dict[str, Any]]:
        return [audit_json(e, local) for e in console.audit_log(who)]

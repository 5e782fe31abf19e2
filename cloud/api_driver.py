"""The JSON API's part of the drivers' requests (SPEC P-WEB-6, P-WEB-7), beside `cloud.api`:
damage reports with photos (base64 in JSON) and change applications, through the same service
(`cloud.driver_requests`) and authorisation as the phone site's pages."""

import base64
import binascii
import datetime as dt
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from cloud.driver_requests import MAX_PHOTO_BYTES, MAX_PHOTOS, DriverRequests
from cloud.service import Cloud, Refused
from cloud.store.driver_pages import ChangeApplication, DamageReport


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as cloud.api's bodies


class DamageReportBody(Body):
    reservation_id: str
    kind: str = Field(description="damage, dirt, flat_tyre or other")
    note: str = Field("", max_length=2000)
    photos: list[str] = Field(
        default_factory=list,
        max_length=MAX_PHOTOS,
        description=f"JPEG, PNG or WebP photos, base64, at most {MAX_PHOTO_BYTES} bytes each",
    )


class ChangeApplicationBody(Body):
    fields: dict[str, str] = Field(
        description="the details to change: name, address, phone, licence_number, "
        "licence_expiry (YYYY-MM-DD)"
    )
    note: str = Field("", max_length=2000)


def add_driver_api(app: FastAPI, cloud: Cloud, who: Any) -> None:
    """`who` is the API's dependency for the signed-in caller."""
    requests = DriverRequests(cloud)
    zone = cloud.policy.zone

    def local(t: dt.datetime | None) -> str | None:
        return None if t is None else t.astimezone(zone).isoformat()

    def report_json(r: DamageReport) -> dict[str, Any]:
        return {
            "id": r.report_id,
            "reservation_id": r.reservation_id,
            "car_id": r.car_id,
            "driver_id": r.driver_id,
            "kind": r.kind,
            "note": r.note,
            "created_at": local(r.created_at),
            "photos": [
                {"id": p.photo_id, "content_type": p.content_type, "size": p.size} for p in r.photos
            ],
        }

    def application_json(a: ChangeApplication) -> dict[str, Any]:
        return {
            "id": a.application_id,
            "driver_id": a.driver_id,
            "fields": a.fields,
            "note": a.note,
            "status": a.status,
            "created_at": local(a.created_at),
            "decided_at": local(a.decided_at),
            "reason": a.reason,
        }

    @app.post(
        "/v1/damage-reports",
        status_code=201,
        summary="Report damage, dirt or a flat tyre before driving, with photos",
    )
    def report_damage(body: DamageReportBody, caller: who) -> dict[str, Any]:
        photos = []
        for i, text in enumerate(body.photos):
            if len(text) > (MAX_PHOTO_BYTES * 4) // 3 + 4:
                raise Refused(413, "photo_too_large", f"photos[{i}]: too large")
            try:
                photos.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise Refused(422, "invalid_request", f"photos[{i}]: not base64") from None
        report = requests.report_damage(caller, body.reservation_id, body.kind, body.note, photos)
        return report_json(report)

    @app.get(
        "/v1/reservations/{reservation_id}/damage-reports",
        summary="The damage reports of one of the caller's reservations",
    )
    def damage_reports(reservation_id: str, caller: who) -> list[dict[str, Any]]:
        return [report_json(r) for r in requests.damage_reports(caller, reservation_id)]

    @app.post(
        "/v1/change-applications",
        status_code=201,
        summary="Apply for a change of details the driver cannot change directly",
    )
    def apply(body: ChangeApplicationBody, caller: who) -> dict[str, Any]:
        return application_json(requests.apply_for_change(caller, body.fields, body.note))

    @app.get("/v1/change-applications", summary="The caller's change applications")
    def applications(caller: who) -> list[dict[str, Any]]:
        return [application_json(a) for a in requests.my_applications(caller)]

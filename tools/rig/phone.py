"""The driver's phone: the cloud's HTTP API as the phone site uses it (rigs and the live view).

Logs in lazily and again when its token has expired (the rig's clock moves hours at a time).
Every call returns the decoded JSON; a refusal raises `Refusal` with the API's code and message.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

JST = dt.timezone(dt.timedelta(hours=9))


def next_mark(t: dt.datetime, minutes: int = 15) -> dt.datetime:
    """The first 15-minute mark at or after `t`: where reservations start and end (C-GRID-1)."""
    t = t.replace(second=0, microsecond=0) + (
        dt.timedelta(minutes=1) if t.second else dt.timedelta()
    )
    return t + dt.timedelta(minutes=(-t.minute) % minutes)


class Refusal(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(f"{status} {error.get('code')}: {error.get('message')}")
        self.status = status
        self.code = str(error.get("code"))
        self.error = error


class Phone:
    def __init__(self, base_url: str, account_id: str, password: str) -> None:
        self.account_id = account_id
        self._password = password
        self._http = httpx.Client(base_url=base_url, timeout=30.0)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    # ---- the phone site's operations ----------------------------------------------------------

    def reserve(self, car_id: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        body = {"car_id": car_id, "start": start.isoformat(), "end": end.isoformat()}
        answer: dict[str, Any] = self.call("POST", "/v1/reservations", body)
        return answer

    def reservation(self, reservation_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("GET", f"/v1/reservations/{reservation_id}")
        return answer

    def extend(self, reservation_id: str, end: dt.datetime | None = None) -> dict[str, Any]:
        body = {} if end is None else {"end": end.isoformat()}
        answer: dict[str, Any] = self.call(
            "POST", f"/v1/reservations/{reservation_id}/extend", body
        )
        return answer

    def operate(
        self, reservation_id: str, name: str, args: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """start, end, reunlock, forgotten_unlock, forgotten_lock, register_card: the car's
        answer (the API waits for it)."""
        path = f"/v1/reservations/{reservation_id}/operations/{name}"
        answer: dict[str, Any] = self.call("POST", path, {"args": args or {}})
        return answer

    def invoices(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.call("GET", "/v1/invoices")
        return answer

    # ---- the wire -----------------------------------------------------------------------------

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer (a dict, or a list for list endpoints)."""
        for attempt in (1, 2):
            response = self._http.request(method, path, json=body, headers=self._auth())
            if response.status_code == 401 and attempt == 1 and path != "/v1/login":
                self._token = None  # expired on the rig's clock: log in again
                continue
            if response.status_code >= 400:
                try:
                    error = response.json().get("error", {})
                except ValueError:
                    error = {"code": "http", "message": response.text}
                raise Refusal(response.status_code, error)
            return response.json()
        raise AssertionError("unreachable")

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            response = self._http.post(
                "/v1/login", json={"account_id": self.account_id, "password": self._password}
            )
            if response.status_code != 200:
                raise Refusal(response.status_code, response.json().get("error", {}))
            self._token = str(response.json()["token"])
        return {"Authorization": f"Bearer {self._token}"}

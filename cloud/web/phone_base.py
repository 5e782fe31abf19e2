"""What every page of the phone site shares: the signed-in caller, CSRF, the texts, local times,
and refusals shown as pages (`PhoneSite`). The routes are in `cloud.web.phone` (log in, home),
`phone_booking` (book, quote, a reservation, change, cancel, extend), `phone_car` (the car
controls) and `phone_account` (trips and invoices, account, damage reports)."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from cloud.auth import DRIVER_KINDS, AuthError, Caller, Tokens
from cloud.driver_requests import DriverRequests
from cloud.service import Cloud, Refused
from cloud.web.i18n import Texts, language
from cloud.web.render import Renderer
from cloud.web.session import CSRF_FIELD, Sessions

Csrf = Annotated[str | None, Form(alias=CSRF_FIELD)]


class LoggedOut(Exception):
    """No session, or an expired one: the page sends the browser to the login page."""


class Shown(Exception):
    """A refusal of the service, to show as a page in the driver's language."""

    def __init__(self, refused: Refused, back: str | None = None) -> None:
        super().__init__(refused.message_en)
        self.refused = refused
        self.back = back


@dataclass
class _Entry:
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    at: float = 0.0


class OnceOnly:
    """Each (account, nonce) runs its operation once; a repeat waits for and gets the first
    result. Bounded: the oldest results are forgotten first."""

    def __init__(self, keep: int = 2000) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._keep = keep

    def run(self, key: tuple[str, str], operation: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            entry = self._entries.get(key)
            first = entry is None
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self._keep:
                    self._entries.popitem(last=False)
        if not first:
            entry.done.wait()
            assert entry.result is not None
            return entry.result
        try:
            entry.result = operation()
        except BaseException as exc:  # never leave a repeat waiting
            entry.result = {
                "ok": False,
                "code": "error",
                "message_en": str(exc),
                "message_ja": str(exc),
                "status": 500,
            }
            raise
        finally:
            entry.done.set()
        return entry.result

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
        return entry.result if entry is not None and entry.done.is_set() else None


class PhoneSite:
    def __init__(self, cloud: Cloud, tokens: Tokens, texts: Texts, secure: bool) -> None:
        self.cloud = cloud
        self.requests = DriverRequests(cloud)
        self.tokens = tokens
        self.texts = texts
        self.sessions = Sessions(tokens.secret, prefix="", secure=secure)
        self.pages = Renderer("phone", texts, self.sessions)
        self.zone = cloud.policy.zone
        self.once = OnceOnly()  # the car controls' one-time nonces (P-WEB-4)

    # ---- who, and may they --------------------------------------------------------------

    def caller(self, request: Request) -> Caller:
        token = self.sessions.token(request)
        if not token:
            raise LoggedOut
        try:
            who = self.tokens.check(token, self.cloud.clock().timestamp())
        except AuthError:
            raise LoggedOut from None
        if who.kind not in DRIVER_KINDS:
            raise LoggedOut
        return who

    def checked(self, request: Request, csrf: str | None) -> None:
        self.sessions.check_csrf(request, csrf)

    @staticmethod
    def lang(request: Request) -> str:
        return language(request)

    def text(self, request: Request, key: str, **kw: Any) -> str:
        return self.texts.get(key, language(request)).format(**kw)

    def message(self, request: Request, exc: Refused) -> str:
        return exc.message_ja if language(request) == "ja" else exc.message_en

    @contextlib.contextmanager
    def refusals(self, back: str | None = None) -> Iterator[None]:
        """A refusal inside becomes its page (the rule in the driver's words, its status)."""
        try:
            yield
        except Refused as exc:
            raise Shown(exc, back) from exc

    def page(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        return self.pages.page(request, template, context, status=status)

    @staticmethod
    def go(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=303)

    # ---- times --------------------------------------------------------------------------

    def local(self, t: dt.datetime | None) -> str:
        return "" if t is None else t.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")

    def today(self) -> dt.date:
        return self.cloud.clock().astimezone(self.zone).date()

    def at(self, day: str, time: str, field: str) -> dt.datetime:
        """A local day (YYYY-MM-DD) and time (HH:MM) from a form, as an aware instant."""
        try:
            d = dt.date.fromisoformat(day)
            t = dt.time.fromisoformat(time)
        except ValueError:
            raise Refused(
                422,
                "bad_time",
                f"{field}: enter a day and a time",
                f"{field}: 日付と時刻を指定してください",
            ) from None
        return dt.datetime.combine(d, t.replace(second=0, microsecond=0), self.zone)

    def times(self) -> list[str]:
        """The grid marks of a day as HH:MM, for the time pickers."""
        grid = self.cloud.policy.booking.grid
        marks, at = [], dt.timedelta(0)
        while at < dt.timedelta(days=1):
            minutes = int(at.total_seconds() // 60)
            marks.append(f"{minutes // 60:02d}:{minutes % 60:02d}")
            at += grid
        return marks

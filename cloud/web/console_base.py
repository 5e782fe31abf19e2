"""What every console page shares (SPEC §7): the signed-in staff member, CSRF, the texts, local
times and refusals shown as pages. The routes are in `cloud.web.console` (log in, the fleet and
its live stream, one car, alerts, staff, audit) and `cloud.web.console_admin` (members, drivers,
cards, stations, penalties, mails, change applications, refuels, damage reports)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from cloud.auth import AuthError, Caller, Tokens
from cloud.console import Console
from cloud.service import Refused
from cloud.store import Conflict, InvalidValue, NotFound
from cloud.store.console import Staff
from cloud.web.i18n import Texts, language
from cloud.web.render import Renderer
from cloud.web.session import CsrfError, Sessions


class ConsoleLoggedOut(Exception):
    """No staff session, or an expired or disabled one: to the console's login page."""


class ConsoleShown(Exception):
    """A refusal, shown as a console page in the staff member's language."""

    def __init__(self, status: int, code: str, message: str, back: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.back = status, code, message, back


class ConsoleSite:
    def __init__(self, console: Console, tokens: Tokens, texts: Texts, secure: bool) -> None:
        self.console = console
        self.cloud = console.cloud
        self.store = console.store
        self.tokens = tokens
        self.texts = texts
        self.sessions = Sessions(tokens.secret, prefix="console_", secure=secure)
        self.pages = Renderer("console", texts, self.sessions)
        self.zone = self.cloud.policy.zone

    def caller(self, request: Request) -> Caller:
        token = self.sessions.token(request)
        if not token:
            raise ConsoleLoggedOut
        try:
            who = self.tokens.check(token, self.cloud.clock().timestamp())
        except AuthError:
            raise ConsoleLoggedOut from None
        if who.kind != "staff":
            raise ConsoleLoggedOut
        return who

    def staff(self, request: Request) -> tuple[Caller, Staff]:
        who = self.caller(request)
        try:
            return who, self.console.staff(who)
        except Refused:
            raise ConsoleLoggedOut from None

    def checked(self, request: Request, csrf: str | None) -> None:
        try:
            self.sessions.check_csrf(request, csrf)
        except CsrfError:
            raise ConsoleShown(403, "csrf", self.text(request, "csrf")) from None

    def text(self, request: Request, key: str, **kw: Any) -> str:
        return self.texts.get(key, language(request)).format(**kw)

    @contextlib.contextmanager
    def refusals(self, request: Request, back: str | None = None) -> Iterator[None]:
        """A refusal inside becomes its page: the rule in the staff member's words, its status."""
        try:
            yield
        except Refused as exc:
            message = exc.message_ja if language(request) == "ja" else exc.message_en
            raise ConsoleShown(exc.status, exc.code, message, back) from exc
        except NotFound as exc:
            raise ConsoleShown(404, f"unknown_{exc.kind}", str(exc), back) from exc
        except InvalidValue as exc:
            raise ConsoleShown(422, "invalid", str(exc), back) from exc
        except Conflict as exc:
            raise ConsoleShown(409, exc.reason, str(exc), back) from exc

    def change(
        self,
        request: Request,
        csrf: str | None,
        action: str,
        target: str,
        do: Callable[[], dict[str, Any] | None],
        back: str,
    ) -> RedirectResponse:
        """An operator's change from an admin form (O-ADM-1): CSRF, the role, then `do`; the
        change or its refusal in the audit log; back to the page."""
        self.checked(request, csrf)
        who, _ = self.staff(request)
        with self.refusals(request, back=back):
            by = self.console.require(who, "admin_change", what=action, target=target).staff_id
            try:
                detail = do() or {}
            except (Refused, InvalidValue, NotFound, Conflict) as exc:
                reason = exc.code if isinstance(exc, Refused) else type(exc).__name__
                self.store.audit(by, action, target, f"refused:{reason}", {})
                raise
        self.store.audit(by, action, target, "ok", detail)
        return self.go(back)

    def page(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        status: int = 200,
        staff: Staff | None = None,
    ) -> HTMLResponse:
        return self.pages.page(request, template, {"me": staff, **context}, status=status)

    @staticmethod
    def go(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=303)

    def local(self, t: dt.datetime | None) -> str:
        return "" if t is None else t.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def instant(self, text: str, field: str) -> dt.datetime:
        """A local date and time from a form (YYYY-MM-DDTHH:MM), as an aware instant."""
        try:
            t = dt.datetime.fromisoformat(text)
        except ValueError:
            raise Refused(422, "bad_time", f"{field}: expected YYYY-MM-DD HH:MM") from None
        return t if t.tzinfo else t.replace(tzinfo=self.zone)

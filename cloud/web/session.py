"""Browser sessions and CSRF protection for the pages (SPEC P-WEB-5).

A session is the API's own access token (`cloud.auth.Tokens`) in an HTTP-only, SameSite=Lax
cookie, so a page and the API agree on who is calling and for how long. Every form carries a CSRF
token: the HMAC of a random per-browser cookie (`kagi_csrf`, SameSite=Strict) under the cloud's
secret, checked on every POST (signed double-submit: a page of another site can neither read the
cookie nor compute the token). Nothing here is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request
from fastapi.responses import Response

SESSION_COOKIE = "kagi_session"
CSRF_COOKIE = "kagi_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class CsrfError(Exception):
    """A change without a valid CSRF token: refused, nothing done."""


class Sessions:
    """Reads and writes the session and CSRF cookies of one site (`prefix` keeps the phone
    site's and the console's apart)."""

    def __init__(self, secret: bytes, *, prefix: str = "", secure: bool = False) -> None:
        self._key = hmac.new(secret, b"kagi web csrf " + prefix.encode(), hashlib.sha256).digest()
        self.session_cookie = prefix + SESSION_COOKIE
        self.csrf_cookie = prefix + CSRF_COOKIE
        self.secure = secure

    # ---- the session -----------------------------------------------------------------------

    def token(self, request: Request) -> str | None:
        return request.cookies.get(self.session_cookie)

    def open(self, response: Response, token: str, max_age: int) -> None:
        response.set_cookie(
            self.session_cookie,
            token,
            max_age=max_age,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/",
        )

    def close(self, response: Response) -> None:
        response.delete_cookie(self.session_cookie, path="/")

    # ---- CSRF ------------------------------------------------------------------------------

    def csrf_seed(self, request: Request) -> tuple[str, bool]:
        """This browser's CSRF cookie, and whether it is new (then `remember` it)."""
        seed = request.cookies.get(self.csrf_cookie)
        if seed and len(seed) == 32:
            return seed, False
        return secrets.token_hex(16), True

    def remember(self, response: Response, seed: str) -> None:
        response.set_cookie(
            self.csrf_cookie, seed, httponly=True, samesite="strict", secure=self.secure, path="/"
        )

    def csrf_token(self, seed: str) -> str:
        return hmac.new(self._key, seed.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, request: Request, given: str | None) -> None:
        seed = request.cookies.get(self.csrf_cookie)
        given = given or request.headers.get(CSRF_HEADER)
        if not seed or not given or not hmac.compare_digest(self.csrf_token(seed), given):
            raise CsrfError("the form's security token is missing or wrong; reload the page")

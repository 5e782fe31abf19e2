"""Who is calling the API: password hashes for members and drivers, and signed access tokens.

Passwords are kept as scrypt hashes (stdlib); tokens are JWTs (PyJWT, HS256) naming the account,
its kind (member or driver) and its member, with an expiry. The clock is passed in, so tests move
time instead of sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import jwt

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
TOKEN_SECONDS = 12 * 3600


class AuthError(Exception):
    """The caller is not who they say, or their token is no longer good; `reason` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("password: must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + _b64(salt) + "$" + _b64(digest)


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=_unb64(salt), **_SCRYPT)
    return hmac.compare_digest(candidate, _unb64(digest))


DRIVER_KINDS = ("driver", "member")  # the phone site's and the drivers' API's accounts


@dataclass(frozen=True)
class Caller:
    """An authenticated account: a driver (11-character ID), a member (8-character ID), or one
    of the operator's staff (kind `staff`, for the console only)."""

    account_id: str
    kind: str  # "driver" | "member" | "staff"
    member_id: str
    admin: bool = False


class Tokens:
    """Issues and checks access tokens with one secret (the cloud's, from its data folder)."""

    def __init__(self, secret: bytes, lifetime: int = TOKEN_SECONDS) -> None:
        if len(secret) < 32:
            raise ValueError("token secret: at least 32 bytes")
        self._secret = secret
        self.lifetime = lifetime

    @property
    def secret(self) -> bytes:
        """The cloud's secret, for keys derived from it (the pages' CSRF tokens)."""
        return self._secret

    def issue(self, caller: Caller, now: float) -> str:
        claims = {
            "sub": caller.account_id,
            "kind": caller.kind,
            "member": caller.member_id,
            "admin": caller.admin,
            "iat": int(now),
            "exp": int(now) + self.lifetime,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def check(self, token: str, now: float) -> Caller:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["sub", "kind", "member", "exp"],
                },
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError("bad_token", f"the access token is not valid ({exc})") from exc
        # Time is checked against the injected clock, not the machine's.
        if now >= int(claims["exp"]):
            raise AuthError("token_expired", "the access token has expired; log in again")
        return Caller(
            account_id=str(claims["sub"]),
            kind=str(claims["kind"]),
            member_id=str(claims["member"]),
            admin=bool(claims.get("admin", False)),
        )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

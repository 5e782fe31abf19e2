"""Caps the size of every HTTP request body, refusing a larger one (413) before reading it.

A declared `Content-Length` over the route's limit is answered at once, with nothing read; a
body without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
Every route's body today is a few hundred bytes (`default`); a route that takes more (a photo)
names its own limit in `larger`, by a path pattern. The refusal is the API's error body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

Scope = dict[str, Any]
DEFAULT_LIMIT = 8 * 1024


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: `app.add_middleware(BodyLimit, default=…, larger=[(pattern, bytes)])`."""

    def __init__(
        self,
        app: Any,
        default: int = DEFAULT_LIMIT,
        larger: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.app = app
        self.default = default
        self.larger = [(re.compile(pattern), limit) for pattern, limit in larger]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.larger:
            if pattern.fullmatch(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(send, 400, "bad_length", "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            await _refuse_large(send, declared, limit)
            return
        received = 0
        over = started = False

        async def counted() -> Any:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _TooLarge
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            if over:  # the app caught our exception and answers something else (FastAPI: 400)
                if not started:
                    started = True
                    await _refuse_large(send, None, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:
                raise
            await _refuse_large(send, None, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _refuse_large(send: Any, declared: int | None, limit: int) -> None:
    size = f"{declared} bytes" if declared is not None else "more bytes"
    await _refuse(
        send,
        413,
        "body_too_large",
        f"the request body is too large ({size}; this route takes at most {limit} bytes)",
        f"リクエストが大きすぎます (上限 {limit} バイト)",
        limit=limit,
    )


async def _refuse(
    send: Any, status: int, code: str, message: str, message_ja: str = "", **extra: Any
) -> None:
    body = json.dumps(
        {"error": {"code": code, "message": message, "message_ja": message_ja or message, **extra}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the rest of the body is never read
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

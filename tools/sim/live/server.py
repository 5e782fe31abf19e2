"""The live view's web server: the page, `GET /api/car`, the controls as `POST /api/...`, and
`GET /api/pins`, a stream of the board's pins (server-sent events) so the reader's LEDs and the
hazard lamps blink on the page as they do on the board.

Controls are plain `def` endpoints: FastAPI runs them in its worker threads, off the event loop,
and `LiveCar` runs them one at a time. Every answer to a control carries the car as it is after
it; every refusal is a 4xx/5xx `{"error": {"code", "message"[, "message_ja"]}}` naming what was
wrong.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from tools.sim.live.car import LiveCar, LiveError

STATIC = Path(__file__).resolve().parent / "static"
PIN_POLL = 0.02  # seconds between two looks at the board's pins for the stream
KEEPALIVE = 5.0  # seconds of no change before the stream sends a comment line


class Body(BaseModel):
    # strict: "yes" is not a boolean; forbid: a misspelt field is named, not ignored
    model_config = ConfigDict(extra="forbid", strict=True)


class Tap(Body):
    card: str


class Door(Body):
    door: Literal["driver", "passenger", "rear_left", "rear_right", "tailgate"]
    open: bool


class Key(Body):
    in_box: bool


class Switch(Body):
    on: bool


class Engine(Body):
    running: bool


class Clock(Body):
    minutes: float


class Minutes(Body):
    minutes: int | None = None


def _error(status: int, code: str, message: str, message_ja: str = "") -> JSONResponse:
    body = {"code": code, "message": message}
    if message_ja:
        body["message_ja"] = message_ja
    return JSONResponse({"error": body}, status_code=status)


def _explain(exc: RequestValidationError) -> str:
    """Pydantic's errors as one line: `door: Input should be 'driver', … (got 'roof')`."""
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            reason = err.get("ctx", {}).get("error", "")
            parts.append(f"the body is not JSON ({reason}): send a JSON object")
            continue
        if isinstance(err.get("input"), bytes):  # not sent as application/json
            parts.append("the body is not JSON: send a JSON object as application/json")
            continue
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        got = "" if err.get("type") == "missing" else f" (got {err.get('input')!r})"
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg')}{got}")
    return "; ".join(parts)


def create_app(car: LiveCar, stopping: Callable[[], bool] = lambda: False) -> FastAPI:
    app = FastAPI(title="kagi live view", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LiveError)
    async def on_live_error(request: Request, exc: LiveError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.message_ja)

    @app.exception_handler(RequestValidationError)
    async def on_bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid", f"{request.url.path}: {_explain(exc)}")

    @app.exception_handler(404)
    async def on_not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(404, "not_found", f"no such page or control: {request.url.path}")

    @app.exception_handler(405)
    async def on_wrong_method(request: Request, exc: Exception) -> JSONResponse:
        return _error(405, "method", f"{request.method} is not allowed on {request.url.path}")

    @app.exception_handler(Exception)
    async def on_failure(request: Request, exc: Exception) -> JSONResponse:
        # a part of the rig failed (the unit's socket gone, …): said on the page, not a bare 500
        return _error(500, "failed", f"{request.url.path}: {type(exc).__name__}: {exc}")

    def done(what: str, result: Any = None) -> dict[str, Any]:
        return {"ok": True, "done": what, "result": result, "car": car.snapshot()}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/car")
    def get_car() -> dict[str, Any]:
        return car.snapshot()

    @app.get("/api/pins")
    async def pins() -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            last: dict[str, bool] | None = None
            quiet = 0.0
            while not stopping():
                now = car.pins()
                if now != last:
                    last, quiet = now, 0.0
                    yield f"data: {json.dumps(now)}\n\n"
                elif quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield ": still here\n\n"
                await asyncio.sleep(PIN_POLL)
                quiet += PIN_POLL

        headers = {"Cache-Control": "no-store"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.post("/api/tap")
    def tap(body: Tap) -> dict[str, Any]:
        after = car.tap(body.card)
        return done(f"tap {body.card}", {"state": after["state"]})

    @app.post("/api/door")
    def door(body: Door) -> dict[str, Any]:
        car.door(body.door, body.open)
        return done(f"{'open' if body.open else 'close'} {body.door}")

    @app.post("/api/key")
    def key(body: Key) -> dict[str, Any]:
        car.key(body.in_box)
        return done("return the key" if body.in_box else "take the key")

    @app.post("/api/brake")
    def brake(body: Switch) -> dict[str, Any]:
        car.brake(body.on)
        return done(f"brake {'on' if body.on else 'off'}")

    @app.post("/api/engine")
    def engine(body: Engine) -> dict[str, Any]:
        car.engine(body.running)
        return done(f"engine {'on' if body.running else 'off'}")

    @app.post("/api/lights")
    def lights(body: Switch) -> dict[str, Any]:
        car.lights(body.on)
        return done(f"lights {'on' if body.on else 'off'}")

    @app.post("/api/clock")
    def clock(body: Clock) -> dict[str, Any]:
        car.advance(body.minutes)
        return done(f"clock +{body.minutes:g} min")

    @app.post("/api/clock/run")
    def clock_run(body: Switch) -> dict[str, Any]:
        car.run_clock(body.on)
        return done("time runs" if body.on else "time stopped")

    @app.post("/api/signal")
    def signal(body: Switch) -> dict[str, Any]:
        car.signal(body.on)
        return done("signal restored" if body.on else "signal cut")

    @app.post("/api/phone/reserve")
    def reserve(body: Minutes | None = None) -> dict[str, Any]:
        minutes = body.minutes if body and body.minutes is not None else None
        booking = car.reserve() if minutes is None else car.reserve(minutes)
        return done("new reservation", booking)

    @app.post("/api/phone/extend")
    def extend(body: Minutes | None = None) -> dict[str, Any]:
        minutes = body.minutes if body and body.minutes is not None else 15
        return done(f"extend +{minutes} min", car.extend(minutes))

    @app.post("/api/phone/{operation}")
    def operate(operation: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return done(f"phone: {operation}", car.operate(operation))

    return app


class LiveServer:
    """uvicorn serving the live view of `car`: `run()` in the main thread (Ctrl-C stops it), or
    `start()` on a thread of its own and `stop()` (tests). The port is bound here, so its URL
    takes connections as soon as it is printed (they wait in the backlog until `run`)."""

    def __init__(self, car: LiveCar, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.host, self.port = host, port
        self._socket = socket.create_server((host, port))
        self.app = create_app(car, stopping=lambda: self.server.should_exit)
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def run(self) -> None:
        try:
            self.server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self.run, name="live-server", daemon=True)
        self._thread.start()
        for _ in range(int(timeout / 0.02)):
            if self.server.started:
                return
            if not self._thread.is_alive():
                break
            time.sleep(0.02)
        raise RuntimeError(f"the live view did not start on {self.url}")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

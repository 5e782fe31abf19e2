"""The unit's control socket: JSON lines over a unix socket, for the simulated rig and tools.

Each request is one JSON object with an `op`; each reply is one JSON object with `ok`. An input
is answered only once it is committed and its outputs applied, so a client knows exactly what the
unit has taken. Bad requests get `{"ok": false, "error": "..."}` naming what was wrong.

    {"op": "tap", "idm": "0102030405060708"}   (+ "authenticated": true for a strong card)
    {"op": "door", "door": "driver", "open": true}
    {"op": "key", "present": false, "position": "lend"}
    {"op": "engine", "running": true}   {"op": "brake", "on": true}   {"op": "lights", "on": false}
    {"op": "position", "lat": 35.68, "lon": 139.76}
    {"op": "vehicle", "odometer_km": 1234.5, "fuel_pct": 80}
    {"op": "command", "id": "c1", "name": "start", "args": {"reservation_id": "r1"}}
    {"op": "bookings", "bookings": {...}}
    {"op": "advance", "seconds": 60}   {"op": "set_time", "t": 1800000000}   (manual clock only)
    {"op": "status"}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable
from typing import Any

from firmware.bookings import Bookings
from firmware.clock import ManualClock
from firmware.effects import effect_to_dict
from firmware.inputs import (
    BookingsChanged,
    BrakeChanged,
    CardTapped,
    ClockMoved,
    DoorChanged,
    EngineChanged,
    Input,
    KeyChanged,
    LightsChanged,
    PositionChanged,
    RemoteCommand,
    VehicleData,
)
from firmware.runner import Runner
from protocol.cards import parse_idm

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0


class RequestError(ValueError):
    pass


def _need(req: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in req:
        raise RequestError(f"{req.get('op')}: missing {key!r}")
    value = req[key]
    if not isinstance(value, kind):
        raise RequestError(f"{req.get('op')}: {key!r} has the wrong type ({value!r})")
    return value


def _optional(req: dict[str, Any], key: str, default: bool) -> bool:
    return _need(req, key, bool) if key in req else default


def _number(req: dict[str, Any], key: str) -> float:
    value = _need(req, key, (int, float))
    if isinstance(value, bool):
        raise RequestError(f"{req.get('op')}: {key!r} must be a number")
    return float(value)


INPUTS: dict[str, Callable[[dict[str, Any]], Input]] = {
    "tap": lambda r: CardTapped(_idm(r), _optional(r, "authenticated", False)),
    "door": lambda r: DoorChanged(_need(r, "door", str), _need(r, "open", bool)),
    "key": lambda r: KeyChanged(_need(r, "present", bool), r.get("position", "return")),
    "engine": lambda r: EngineChanged(_need(r, "running", bool)),
    "brake": lambda r: BrakeChanged(_need(r, "on", bool)),
    "lights": lambda r: LightsChanged(_need(r, "on", bool)),
    "position": lambda r: PositionChanged(_number(r, "lat"), _number(r, "lon")),
    "vehicle": lambda r: VehicleData(_number(r, "odometer_km"), _number(r, "fuel_pct")),
    "command": lambda r: RemoteCommand(
        _need(r, "id", str), _need(r, "name", str), dict(r.get("args", {}))
    ),
    "bookings": lambda r: BookingsChanged(Bookings.from_dict(_need(r, "bookings", dict))),
}


def _idm(req: dict[str, Any]) -> bytes:
    return parse_idm(_need(req, "idm", str))


class Control:
    """Serves the control socket for one runner."""

    def __init__(self, path: str, runner: Runner, status: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self.runner = runner
        self.status = status
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        control = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    if not line.strip():
                        continue
                    reply = control.answer(line)
                    self.wfile.write(json.dumps(reply).encode() + b"\n")
                    self.wfile.flush()

        self._server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def answer(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise RequestError("a request is a JSON object")
            return {"ok": True, **self._do(req)}
        except ValueError as exc:  # a bad request (JSONDecodeError is a ValueError too)
            log.warning("control: refused %r: %s", line[:200], exc)
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control: %r failed", line[:200])
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _do(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "status":
            return {"status": self.runner.submit(self.status).result(TIMEOUT_S)}
        if op in ("advance", "set_time"):
            clock = self.runner.clock
            if not isinstance(clock, ManualClock):
                raise RequestError(f"{op}: the unit runs on the system clock")
            if op == "advance":
                clock.advance(_number(req, "seconds"))
            else:
                clock.set(_number(req, "t"))
            event: Input = ClockMoved()
        elif isinstance(op, str) and op in INPUTS:
            event = INPUTS[op](req)
        else:
            raise RequestError(
                f"unknown op {op!r}; known: status, advance, set_time, " + ", ".join(INPUTS)
            )
        effects = self.runner.submit(event).result(TIMEOUT_S)
        return {"effects": [effect_to_dict(e) for e in effects]}

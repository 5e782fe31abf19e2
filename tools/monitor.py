"""`kagi unit monitor`: a running car unit, live, for the technician on the phone with a driver.

    kagi unit monitor --config /etc/kagi/unit.toml      # live on a terminal (Ctrl-C to leave)
    kagi unit monitor --config unit.toml --once         # one view, then exit
    kagi unit monitor --config unit.toml | tee log      # one view, then a line per change

It asks the unit's control socket for `status` (read-only; nothing is sent to the car) and shows
the trip state, the timers counting down, the inputs, the outputs, the board link and the broker
link, and the last events. The events are the unit's own when its status carries them, else the
tail of its outbox read from its database (read-only): the events it has not sent yet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import sqlite3
import sys
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.options import MissingOption, debug_option, env_option


def add_commands(cmds: Any) -> None:
    monitor = cmds.add_parser("monitor", help="watch a running unit live (read-only)")
    env_option(monitor, "--config", "KAGI_UNIT_CONFIG", "the unit's TOML configuration file")
    monitor.add_argument("--control", help="the unit's control socket (default: from --config)")
    monitor.add_argument("--once", action="store_true", help="print one view and exit")
    monitor.add_argument(
        "--lines", action="store_true", help="one view, then a line per change (also on a tty)"
    )
    monitor.add_argument("--interval", type=float, default=0.5, help="seconds between looks")
    monitor.add_argument("--events", type=int, default=8, help="how many last events to show")
    debug_option(monitor)
    monitor.set_defaults(func=_run)


class MonitorError(Exception):
    """The unit cannot be watched (no control socket, not running); one line."""


# ---- where the unit is -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    control: str
    database: str = ""
    cloud: str = ""
    timezone: str = "UTC"


def target(args: argparse.Namespace) -> Target:
    if args.config:
        from firmware.config import ConfigError, load_unit_config

        try:
            config = load_unit_config(args.config)
        except ConfigError as exc:
            raise MonitorError(str(exc)) from None
        control = args.control or config.control
        if not control:
            raise MonitorError(f"{args.config}: unit.control is empty: the unit has no socket")
        return Target(control, config.database, config.cloud, config.trip.timezone)
    if not args.control:
        raise MissingOption("--config (or KAGI_UNIT_CONFIG) or --control is needed")
    return Target(args.control)


class Unit:
    """The control socket, one `status` at a time (connected again when the unit restarts)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None

    def status(self) -> dict[str, Any]:
        for attempt in (1, 2):
            try:
                if self._sock is None:
                    self._connect()
                assert self._sock is not None
                self._sock.sendall(b'{"op": "status"}\n')
                line = self._file.readline()
                if not line:
                    raise OSError("the unit closed its socket")
                answer = json.loads(line)
                if not answer.get("ok"):
                    raise MonitorError(f"the unit refused status: {answer.get('error')}")
                status: dict[str, Any] = answer["status"]
                return status
            except OSError as exc:
                self.close()
                if attempt == 2:
                    raise MonitorError(
                        f"no unit answers on {self.path} ({exc}): is `kagi unit run` running?"
                    ) from None
        raise AssertionError("unreachable")

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self._sock, self._file = sock, sock.makefile("rb")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None


def outbox_tail(database: str, count: int) -> list[dict[str, Any]]:
    """The last events waiting in the unit's outbox, read-only ([] when unreadable)."""
    if not database or not Path(database).exists() or count <= 0:
        return []
    try:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = db.execute(
                "SELECT seq, type, at, data FROM outbox ORDER BY seq DESC LIMIT ?", (count,)
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    return [
        {"seq": seq, "type": kind, "at": at, "data": json.loads(data), "sent": False}
        for seq, kind, at, data in reversed(rows)
    ]


def events_of(status: dict[str, Any], where: Target, count: int) -> list[dict[str, Any]]:
    if isinstance(status.get("events"), list):
        return list(status["events"])[-count:]
    return outbox_tail(where.database, count)


# ---- what it shows ---------------------------------------------------------------------------


def _clock(t: float | None, tz: zoneinfo.ZoneInfo) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S")


def _time(t: float, tz: zoneinfo.ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(t, tz).strftime("%H:%M:%S")


def left(seconds: float) -> str:
    """A countdown: 0:45, 9:59, 1:59:00; "due" once reached."""
    if seconds <= 0:
        return "due"
    s = int(seconds + 0.999)  # 59.2 s left shows as 1:00 until it is under a minute
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _inputs(sensors: dict[str, Any]) -> str:
    doors = sensors.get("doors") or {}
    opened = [name for name, is_open in doors.items() if is_open]
    parts = [("doors open: " + ", ".join(opened)) if opened else "doors closed"]
    if sensors.get("key_present"):
        parts.append(f"key in the box at {sensors.get('key_position')}")
    else:
        parts.append("key out of the box")
    parts.append("engine running" if sensors.get("engine") else "engine off")
    parts.append("brake on" if sensors.get("brake") else "brake off")
    parts.append("lights on" if sensors.get("lights") else "lights off")
    extra = []
    if sensors.get("position"):
        lat, lon = sensors["position"]
        extra.append(f"at {lat:.5f},{lon:.5f}")
    if sensors.get("odometer_km") is not None:
        extra.append(f"odometer {sensors['odometer_km']:g} km")
    if sensors.get("fuel_pct") is not None:
        extra.append(f"fuel {sensors['fuel_pct']:g} %")
    return " · ".join(parts + extra)


def _outputs(outputs: dict[str, Any]) -> str:
    immobilised = outputs.get("immobilised")
    return " · ".join(
        [
            f"doors {outputs.get('doors') or 'unknown'}",
            "immobiliser " + ("unknown" if immobilised is None else "ON" if immobilised else "off"),
            f"reader LED {outputs.get('led') or 'unknown'}",
        ]
    )


def _board(status: dict[str, Any]) -> str:
    board = status.get("board")
    if not isinstance(board, dict):
        car = status.get("car")
        return "simulated (sim:)" + (f": {_outputs_of_car(car)}" if isinstance(car, dict) else "")
    who = board.get("board") or {}
    text = "up" if board.get("up") else "DOWN"
    if who:
        text += (
            f" · {who.get('name')} firmware {who.get('firmware')} pin map {who.get('pinmap')}"
            f" build {who.get('build') or '-'}"
        )
    text += f" · {board.get('url')}"
    counts = [f"{board[k]} {k.replace('_', ' ')}" for k in ("commands", "retries", "bad_frames")]
    return text + " · " + ", ".join(c for c in counts if not c.startswith("None"))


def _outputs_of_car(car: dict[str, Any]) -> str:
    prompts = car.get("prompts") or []
    last = f", last prompt {prompts[-1]}" if prompts else ""
    return f"{car.get('hazard_blinks', 0)} hazard blinks so far{last}"


def _cloud(status: dict[str, Any], url: str) -> str:
    cloud = status.get("cloud")
    if isinstance(cloud, dict):
        up = next((cloud[k] for k in ("connected", "up", "online") if k in cloud), None)
        parts = ["unknown" if up is None else "connected" if up else "DISCONNECTED"]
        if cloud.get("url"):
            parts.append(str(cloud["url"]))
        for key, value in cloud.items():
            if key in ("connected", "up", "online", "url") or value in (None, "", 0, False, {}):
                continue
            if isinstance(value, dict):
                value = " ".join(f"{k}={v}" for k, v in value.items())
            parts.append(f"{key.replace('_', ' ')} {'yes' if value is True else value}")
        return " · ".join(parts)
    if url.startswith("none:"):
        return "none (unit.cloud = none:): events stay in the outbox"
    return "not reported by this unit" + (f" ({url.split('@')[-1]})" if url else "")


def _event(e: dict[str, Any], tz: zoneinfo.ZoneInfo) -> str:
    data = e.get("data") or {}
    keys = ("reservation_id", "by", "to", "reason", "checks", "door", "up")
    detail = " ".join(f"{k}={data[k]}" for k in keys if k in data)
    at = e.get("at")
    when = _time(at, tz) if isinstance(at, int | float) else "--:--:--"
    sent = "" if e.get("sent", True) else " (not sent yet)"
    return f"#{e.get('seq')} {when} {e.get('type')} {detail}".rstrip() + sent


def render(
    status: dict[str, Any], events: list[dict[str, Any]], timezone: str = "UTC", cloud_url: str = ""
) -> list[str]:
    """The view of one status, as lines (the same on a terminal, with --once and in a log)."""
    tz = zoneinfo.ZoneInfo(timezone)
    now = float(status.get("now") or time.time())
    overlay = status.get("overlay")
    state = str(status.get("state"))
    if overlay and overlay != "off":
        state += f" + {overlay}"
    lines = [
        f"car {status.get('car_id')} · unit clock {_clock(now, tz)} ({timezone})",
        f"state    {state}",
    ]
    trip = status.get("trip")
    if isinstance(trip, dict):
        end = trip.get("end")
        ends = f"ends {_time(end, tz)} ({left(end - now)})" if end else ""
        lines.append(
            f"trip     {trip.get('reservation_id')} · driver {trip.get('driver_id')} · "
            f"started by {trip.get('started_by')} · {ends}"
        )
    else:
        lines.append("trip     none")
    deadlines = status.get("deadlines") or {}
    timers = sorted(deadlines.items(), key=lambda item: item[1])
    lines.append("timers   " + (" · ".join(f"{n} {left(at - now)}" for n, at in timers) or "none"))
    lines.append("inputs   " + _inputs(status.get("sensors") or {}))
    lines.append("outputs  " + _outputs(status.get("outputs") or {}))
    lines.append("board    " + _board(status))
    lines.append("cloud    " + _cloud(status, cloud_url))
    outbox = status.get("outbox") or {}
    lines.append(
        f"outbox   {outbox.get('pending', 0)} event(s) not sent yet"
        f" · last #{outbox.get('last_seq')}"
    )
    lines.append("events   " + ("none" if not events else _event(events[0], tz)))
    lines.extend("         " + _event(e, tz) for e in events[1:])
    return lines


def changes(
    old: dict[str, Any],
    new: dict[str, Any],
    old_events: list[dict[str, Any]],
    events: list[dict[str, Any]],
    timezone: str = "UTC",
) -> list[str]:
    """What changed between two looks, one line each, stamped with the unit's clock."""
    tz = zoneinfo.ZoneInfo(timezone)
    stamp = _time(float(new.get("now") or time.time()), tz)
    out: list[str] = []

    def note(text: str) -> None:
        out.append(f"{stamp} {text}")

    for key in ("state", "overlay"):
        if old.get(key) != new.get(key):
            note(f"{key} {old.get(key)} → {new.get(key)}")
    s0, s1 = old.get("sensors") or {}, new.get("sensors") or {}
    d0, d1 = s0.get("doors") or {}, s1.get("doors") or {}
    for door, is_open in d1.items():
        if d0.get(door) != is_open:
            note(f"door {door} {'opened' if is_open else 'closed'}")
    if (s0.get("key_present"), s0.get("key_position")) != (
        s1.get("key_present"),
        s1.get("key_position"),
    ):
        where = f"in the box at {s1.get('key_position')}" if s1.get("key_present") else "taken"
        note(f"key {where}")
    for name, on, off in (
        ("engine", "engine started", "engine stopped"),
        ("brake", "brake on", "brake off"),
        ("lights", "lights on", "lights off"),
    ):
        if s0.get(name) != s1.get(name):
            note(on if s1.get(name) else off)
    o0, o1 = old.get("outputs") or {}, new.get("outputs") or {}
    if o0.get("doors") != o1.get("doors"):
        note(f"doors {o1.get('doors') or 'unknown'}")
    if o0.get("immobilised") != o1.get("immobilised"):
        note(f"immobiliser {'on' if o1.get('immobilised') else 'off'}")
    if o0.get("led") != o1.get("led"):
        note(f"reader LED {o1.get('led')}")
    t0, t1 = old.get("deadlines") or {}, new.get("deadlines") or {}
    now = float(new.get("now") or time.time())
    for name in sorted(set(t0) | set(t1)):
        if name not in t1:
            note(f"timer {name} over")
        elif t0.get(name) != t1[name]:
            note(f"timer {name} set: {left(t1[name] - now)}")
    b0, b1 = old.get("board") or {}, new.get("board") or {}
    if isinstance(b1, dict) and b0.get("up") != b1.get("up"):
        note(f"board link {'up' if b1.get('up') else 'DOWN'}")
    if old.get("cloud") != new.get("cloud") and isinstance(new.get("cloud"), dict):
        note(f"cloud {_cloud(new, '')}")
    seen = {e.get("seq") for e in old_events}
    for e in events:
        if e.get("seq") not in seen:
            note(f"event {_event(e, tz)}")
    return out


# ---- the command -----------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    try:
        return watch(args, print)
    except (MonitorError, MissingOption) as exc:
        if args.debug:
            raise
        print(f"kagi unit monitor: {exc}", file=sys.stderr)
        return 2


def watch(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    where = target(args)
    unit = Unit(where.control)
    try:
        status = unit.status()
        events = events_of(status, where, args.events)

        def frame(s: dict[str, Any], ev: list[dict[str, Any]]) -> list[str]:
            return render(s, ev, where.timezone, where.cloud)

        live = sys.stdout.isatty() and not args.lines and not args.once
        if not live:
            for line in frame(status, events):
                out(line)
            if args.once:
                return 0
            sys.stdout.flush()
        while True:
            if live:
                sys.stdout.write("\x1b[H\x1b[J" + "\n".join(frame(status, events)) + "\n")
                sys.stdout.write("\n(read-only; Ctrl-C to leave)\n")
                sys.stdout.flush()
            time.sleep(args.interval)
            try:
                new = unit.status()
            except MonitorError as exc:
                out(f"{time.strftime('%H:%M:%S')} {exc}; trying again")
                sys.stdout.flush()
                time.sleep(1.0)
                continue
            new_events = events_of(new, where, args.events)
            if not live:
                for line in changes(status, new, events, new_events, where.timezone):
                    out(line)
                sys.stdout.flush()
            status, events = new, new_events
    except KeyboardInterrupt:
        return 0
    finally:
        unit.close()

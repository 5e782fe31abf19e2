"""The live car: one running sim rig, the demo reservation, everything the page shows as one
JSON-able snapshot, and the controls, one at a time.

Every control is a rig step that blocks until the car has taken it, so controls run one at a
time under one lock. The snapshot does not wait for them: it reads the unit's status over a
control-socket connection of its own and the board's pins as they are, so the page stays live
while a tap or a phone operation is under way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cloud.demo import CAR, DRIVER_CARDS, STATION
from firmware.config import Timing
from firmware.prompts import BY_ID
from tools.monitor import MonitorError, Unit
from tools.rig.car import DOORS
from tools.rig.phone import JST, Phone, Refusal, next_mark
from tools.rig.rigfile import RigError
from tools.sim.rig import SimRig

T = TypeVar("T")
log = logging.getLogger(__name__)

DRIVER = "XXY00001002"  # Bob, the demo driver whose trip the page drives
# the cards on the page: the demo drivers' own, and one the cloud has never heard of
CARD_NAMES = {
    "bob": DRIVER_CARDS["XXY00001002"],
    "alice": DRIVER_CARDS["XXY00001001"],
    "unknown": "0123456789ABCDEF",
}
OPERATIONS = ("start", "end", "reunlock", "forgotten_unlock", "forgotten_lock", "register_card")
RESERVATION_MINUTES = 60
BUSY_TIMEOUT = 30.0  # seconds a control waits for the one before it
TICK = 1.0  # seconds between two steps of the running clock
REFRESH = 3.0  # seconds between two reads of the reservation from the cloud
PROMPTS_SHOWN, MAILS_SHOWN = 8, 5
# the unit's deadlines (firmware/core.py) as a person reads them
TIMER_LABELS = {
    "door": ("ドア開扉待ち", "open a door (else relock)"),
    "key": ("キー取出し待ち", "take the key (else security lock)"),
    "key_warning": ("キー警告", "key warning"),
    "return_key": ("キー返却中", "key in the box (else security lock)"),
    "return_key_warning": ("キー返却警告", "key-in-box warning"),
    "reminder": ("返却10分前案内", "return reminder"),
    "overtime": ("返却時刻", "return time"),
    "forgotten": ("忘れ物受付", "forgotten-item window"),
    "registration": ("カード登録待ち", "card registration"),
    "reader": ("リーダー表示切替", "reader changes"),
}


class LiveError(Exception):
    """A control that cannot be done: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, code: str, message: str, message_ja: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.message_ja = message_ja

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.message_ja:
            body["message_ja"] = self.message_ja
        return body


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, JST).isoformat(timespec="seconds")


class StatusLine:
    """The technician's status reader (`tools.monitor.Unit`: its own connection to the unit's
    control socket, connected again when the unit restarts), shared by the page's threads."""

    def __init__(self, path: Path) -> None:
        self._unit = Unit(str(path), timeout=10)
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        with self._lock:
            try:
                return self._unit.status()
            except MonitorError as exc:
                raise LiveError(502, "unit", str(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._unit.close()


class LiveCar:
    """The page's car: `setup_demo()`, `snapshot()`, the controls, `close()`."""

    def __init__(self, rig: SimRig, timing: Timing | None = None) -> None:
        assert rig.unit_process is not None, "start the rig first"
        self.rig = rig
        self.timing = timing or Timing()
        self.phone: Phone = rig.phone(DRIVER)
        self.reservation: dict[str, Any] | None = None
        self.running = False  # car time follows real time
        self.busy: str | None = None  # the control under way
        self._lock = threading.Lock()
        self._status = StatusLine(rig.unit_process.socket_path)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # ---- life cycle ---------------------------------------------------------------------------

    def setup_demo(self, minutes: int = RESERVATION_MINUTES) -> dict[str, Any]:
        """The car parked at its station; Bob's reservation from the first 15-minute mark at
        least 15 minutes ahead; the clock moved to its window's opening (start − 14 min), where
        a card tap starts the trip."""
        self.rig.park()  # the car's GPS at its station, its odometer and fuel (CAN)
        start = next_mark(self.rig.now + dt.timedelta(minutes=15))
        booking = self.phone.reserve(CAR, start, start + dt.timedelta(minutes=minutes))
        self.reservation = booking
        self.rig.wait_bookings(
            lambda held: any(r["id"] == booking["id"] for r in held), "the demo reservation"
        )
        opening = start - dt.timedelta(seconds=self.timing.start_early)
        self.rig.advance(seconds=max(0.0, (opening - self.rig.now).total_seconds()))
        return booking

    def start_ticker(self) -> None:
        """The thread that runs the clock (while `running`) and rereads the reservation."""
        self._ticker = threading.Thread(target=self._tick, name="live-ticker", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=BUSY_TIMEOUT)
        self._status.close()

    def _tick(self) -> None:
        last_step = last_read = time.monotonic()
        while not self._stop.wait(TICK / 4):
            now = time.monotonic()
            if not self.running:
                last_step = now
            elif now - last_step >= TICK and self._lock.acquire(timeout=0.1):
                try:
                    now = time.monotonic()
                    self.rig.advance(seconds=now - last_step)
                    last_step = now
                except Exception as exc:  # the unit restarting, or going away: try again
                    log.warning("live view: the running clock could not move: %s", exc)
                finally:
                    self._lock.release()
            if now - last_read >= REFRESH and self._lock.acquire(timeout=0.1):
                try:
                    self._read_reservation()
                    last_read = now
                except Exception as exc:  # the cloud busy or going away: the next read will do
                    log.warning("live view: could not read the reservation: %s", exc)
                finally:
                    self._lock.release()

    # ---- what the page shows ------------------------------------------------------------------

    def pins(self) -> dict[str, bool]:
        """The board's outputs as they are this instant (the LEDs and hazards blink live)."""
        return self.rig.car_outputs.levels()

    def snapshot(self) -> dict[str, Any]:
        rig = self.rig
        status = self._status.status()
        sensors = status["sensors"]
        now = float(status["now"])
        pins = self.pins()
        prompts = rig.prompts()
        trip = status.get("trip")
        return {
            "car_id": status.get("car_id", CAR),
            "station": STATION,
            "clock": {
                "car": iso(now),
                "car_t": now,
                "cloud": rig.now.isoformat(timespec="seconds"),
                "running": self.running,
            },
            "state": status["state"],
            "overlay": status["overlay"],
            "doors": dict(sensors["doors"]),
            "lock": rig.doors(),
            "key": {"in_box": bool(sensors["key_present"]), "position": sensors["key_position"]},
            "engine": bool(sensors["engine"]),
            "brake": bool(sensors["brake"]),
            "lights": bool(sensors["lights"]),
            "immobilised": pins.get("immobiliser", False),
            "reader": {"pattern": status["outputs"]["led"]},
            "hazard": {"on": pins.get("hazard", False), "blinks": rig.pulses("hazard")},
            "pins": pins,
            "prompts": [_prompt(p) for p in reversed(prompts[-PROMPTS_SHOWN:])],
            "prompt_count": len(prompts),
            "trip": _trip(trip) if trip else None,
            "timers": [
                _timer(name, float(at), now) for name, at in sorted(status["deadlines"].items())
            ],
            "reservation": self._reservation_view(),
            "cloud": {
                "connected": bool(status.get("cloud", {}).get("connected")),
                "signal": rig.network.is_open,
            },
            "board_up": bool(status.get("board", {}).get("up")),
            "sites": sites(rig.cloud.api_url),
            "mails": [
                {"to": str(m["To"]), "subject": str(m["Subject"])}
                for m in reversed(rig.mails.messages[-MAILS_SHOWN:])
            ],
            "busy": self.busy,
        }

    def _reservation_view(self) -> dict[str, Any] | None:
        r = self.reservation
        if r is None:
            return None
        start = dt.datetime.fromisoformat(r["start"])
        opens = start - dt.timedelta(seconds=self.timing.start_early)
        card_until = opens + dt.timedelta(seconds=self.timing.reader_window)
        keys = ("id", "driver_id", "start", "end", "status", "extensions", "fee_yen")
        view = {k: r.get(k) for k in keys}
        view["window_opens"] = opens.isoformat()
        view["card_until"] = card_until.isoformat()
        return view

    def _read_reservation(self) -> None:
        if self.reservation is not None:
            self.reservation = self.phone.reservation(self.reservation["id"])

    # ---- the controls -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _one_at_a_time(self, what: str) -> Iterator[None]:
        if not self._lock.acquire(timeout=BUSY_TIMEOUT):
            raise LiveError(503, "busy", f"{what}: the car is still busy with {self.busy}")
        self.busy = what
        try:
            yield
        finally:
            self.busy = None
            self._lock.release()

    def do(self, what: str, action: Callable[[], T]) -> T:
        """Run one control under the lock; the rig's and the cloud's refusals as LiveError."""
        with self._one_at_a_time(what):
            try:
                return action()
            except Refusal as exc:
                err = exc.error
                raise LiveError(
                    exc.status,
                    exc.code,
                    f"{what}: {err.get('message', exc)}",
                    str(err.get("message_ja", "")),
                ) from None
            except RigError as exc:
                raise LiveError(409, "refused", f"{what}: {exc}") from None
            except AssertionError as exc:
                if not str(exc).startswith("gave up after"):
                    raise
                # the rig gave up waiting for the car (wait_for)
                raise LiveError(504, "timeout", f"{what}: {exc}") from None

    def tap(self, card: str) -> dict[str, Any]:
        """`bob`, `alice`, `unknown`, or any card's IDm (16 hex digits)."""
        idm = CARD_NAMES.get(card, card)
        if not (len(idm) == 16 and all(c in "0123456789abcdefABCDEF" for c in idm)):
            raise LiveError(
                422,
                "card",
                f"card: expected one of {', '.join(CARD_NAMES)} or an IDm of 16 hex digits, "
                f"got {card!r}",
                "カード: bob・alice・unknown または16桁のIDmを指定してください",
            )

        return self.do(f"tap {card}", lambda: self.rig.tap(idm))

    def door(self, door: str, open_: bool) -> None:
        if door not in DOORS:
            raise LiveError(422, "door", f"door: expected one of {', '.join(DOORS)}, got {door!r}")
        action = self.rig.open_door if open_ else self.rig.close_door
        self.do(f"{'open' if open_ else 'close'} {door}", lambda: action(door))

    def key(self, in_box: bool) -> None:
        if in_box:
            self.do("return the key", self.rig.return_key)
        else:
            self.do("take the key", self.rig.take_key)

    def brake(self, on: bool) -> None:
        self.do(f"brake {'on' if on else 'off'}", lambda: self.rig.brake(on))

    def engine(self, running: bool) -> None:
        self.do(f"engine {'on' if running else 'off'}", lambda: self.rig.engine(running))

    def lights(self, on: bool) -> None:
        self.do(f"lights {'on' if on else 'off'}", lambda: self.rig.lights(on))

    def advance(self, minutes: float) -> None:
        if not 0 < minutes <= 24 * 60:
            raise LiveError(
                422, "minutes", f"minutes: expected more than 0 and at most 1440, got {minutes}"
            )
        self.do(f"clock +{minutes:g} min", lambda: self.rig.advance(minutes=minutes))

    def run_clock(self, on: bool) -> None:
        self.running = on

    def signal(self, on: bool) -> None:
        if on:
            self.do("restore the signal", self.rig.restore_signal)
        else:
            self.do("cut the signal", self.rig.cut_signal)

    def operate(self, name: str) -> dict[str, Any]:
        """A phone operation on the current reservation; the car's answer."""
        if name not in OPERATIONS:
            raise LiveError(
                422,
                "operation",
                f"operation: expected one of {', '.join(OPERATIONS)}, got {name!r}",
            )
        reservation = self._current()

        def run() -> dict[str, Any]:
            try:
                return self.phone.operate(reservation["id"], name)
            finally:
                self._read_reservation()

        return self.do(f"phone: {name}", run)

    def extend(self, minutes: int = 15) -> dict[str, Any]:
        if minutes <= 0 or minutes % 15:
            raise LiveError(
                422, "minutes", f"minutes: expected a multiple of 15 above 0, got {minutes}"
            )
        reservation = self._current()

        def run() -> dict[str, Any]:
            end = dt.datetime.fromisoformat(reservation["end"]) + dt.timedelta(minutes=minutes)
            self.reservation = self.phone.extend(reservation["id"], end)
            return self.reservation

        return self.do(f"phone: extend +{minutes} min", run)

    def reserve(self, minutes: int = RESERVATION_MINUTES) -> dict[str, Any]:
        """A new reservation for Bob in the first free slot from now (the car keeps 30 minutes
        between reservations, C-CAR-1); it becomes the page's reservation."""
        if minutes < 30 or minutes % 15:
            raise LiveError(
                422, "minutes", f"minutes: expected a multiple of 15 of at least 30, got {minutes}"
            )

        def run() -> dict[str, Any]:
            start = next_mark(self.rig.now)
            for _ in range(4 * 24):  # a day of 15-minute marks
                try:
                    self.reservation = self.phone.reserve(
                        CAR, start, start + dt.timedelta(minutes=minutes)
                    )
                    return self.reservation
                except Refusal as exc:
                    if exc.code not in ("car_buffer", "driver_overlap"):
                        raise
                start += dt.timedelta(minutes=15)
            raise LiveError(409, "no_slot", "new reservation: no free slot in the next 24 hours")

        return self.do(f"phone: new reservation ({minutes} min)", run)

    def _current(self) -> dict[str, Any]:
        if self.reservation is None:
            raise LiveError(409, "no_reservation", "no reservation yet: make one first")
        return self.reservation


def _prompt(prompt_id: str) -> dict[str, str]:
    text = BY_ID.get(prompt_id)
    return {
        "id": prompt_id,
        "ja": text.ja if text else "",
        "en": text.en if text else prompt_id,
    }


def _timer(name: str, at: float, now: float) -> dict[str, Any]:
    ja, en = TIMER_LABELS.get(name, (name, name))
    return {"name": name, "ja": ja, "en": en, "at": iso(at), "left_s": round(at - now, 1)}


def _trip(trip: dict[str, Any]) -> dict[str, Any]:
    view = dict(trip)
    for key in ("started_at", "end", "ended_at"):
        if isinstance(view.get(key), int | float):
            view[key] = iso(float(view[key]))
    return view


def sites(cloud_url: str) -> dict[str, str]:
    """The pages of the rig's cloud: the drivers' phone site and the operator console."""
    return {"phone": f"{cloud_url}/", "console": f"{cloud_url}/console/"}

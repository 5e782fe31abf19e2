"""The I/O board adapter: the `Body` port over the board's serial link.

The board is addressed by URL, as pyserial's `serial_for_url` takes it: a device path
(`/dev/ttyUSB0`), a pty, `socket://host:port`, `rfc2217://…`. The adapter checks the board's hello
(link version, firmware, pin map), heartbeats, sends every output as a command the board
acknowledges (tried a bounded number of times, never applied twice: the frames carry a sequence
number), and posts what the board reports — switch changes, and the link going down or coming
back — to the runner's queue. Its threads only ever post; `apply` runs on the runner's thread.

The frames are `boards.common.link`, the very module the board runs.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import serial

from boards.common import link
from firmware.effects import Effect, Hazard, Immobiliser, Lock, Prompt, ReaderLed, Unlock
from firmware.inputs import (
    BoardLinkChanged,
    BrakeChanged,
    DoorChanged,
    EngineChanged,
    Input,
    KeyChanged,
    LightsChanged,
)
from firmware.ports import Post
from firmware.prompts import BY_ID

log = logging.getLogger(__name__)

MIN_FIRMWARE = (0, 1, 0)  # the oldest board firmware this unit works with
BAUDRATE = 115200
DOORS = {
    "door_driver": "driver",
    "door_passenger": "passenger",
    "door_rear_left": "rear_left",
    "door_rear_right": "rear_right",
    "tailgate": "tailgate",
}


@dataclass(frozen=True)
class LinkTiming:
    heartbeat_s: float = 0.5  # a heartbeat when nothing else was sent for this long
    ack_timeout_s: float = 0.2  # wait this long for an acknowledgement…
    tries: int = 3  # …this many times, then the link is down
    reconnect_s: float = 0.5  # between attempts to open the port or say hello


class BoardLinkError(Exception):
    """The board did not answer (the link is down), or answered what this unit cannot use."""


class BoardRefused(Exception):
    """The board answered a command with an error status: the link is fine, the command is not."""


def check_url(url: str) -> None:
    """Raises ValueError naming the problem when pyserial cannot take `url`."""
    try:
        serial.serial_for_url(url, do_not_open=True)
    except (ValueError, serial.SerialException) as exc:
        raise ValueError(f"{url!r} is not a serial port URL pyserial knows ({exc})") from None


def to_command(effect: Effect) -> tuple[str, tuple[int, ...]] | None:
    """The link command for one output of the core (None for what is not an output)."""
    match effect:
        case Lock():
            return "lock", ()
        case Unlock():
            return "unlock", ()
        case Immobiliser(on=on):
            return "immobiliser", (1 if on else 0,)
        case Hazard(times=times):
            return "hazard", (max(0, min(times, link.KEEP_BLINKING - 1)),)
        case ReaderLed(pattern=pattern):
            if pattern not in link.LED_PATTERNS:
                raise ValueError(f"reader LED: the board has no pattern {pattern!r}")
            return "led", (link.LED_PATTERNS.index(pattern),)
        case Prompt(id=prompt):
            if prompt not in BY_ID:
                raise ValueError(f"prompt: no voice clip for {prompt!r}")
            return "voice", (BY_ID[prompt].clip,)
    return None


def firmware_version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return ()


class BoardLink:
    """The `Body` port on a serial line to the I/O board."""

    def __init__(self, url: str, timing: LinkTiming | None = None, baudrate: int = BAUDRATE):
        check_url(url)
        self.url = url
        self.timing = timing or LinkTiming()
        self.baudrate = baudrate
        self._post: Post | None = None
        self._port: Any = None
        self._write_lock = threading.Lock()  # whole frames on the wire, from any thread
        self._command_lock = threading.Lock()  # one command waits for its ACK at a time
        self._reply = threading.Condition()
        self._waiting: int | None = None
        self._answer: link.Frame | None = None
        self._seq = 0
        self._last_tx = 0.0
        self._up = False
        self._ever_up = False
        self._resync = ""  # why the supervisor must say hello again (the board asked for it)
        self._lost_ms: int | None = None  # the board's own report of a heartbeat loss
        self._board: link.Hello | None = None
        self._board_seq: int | None = None  # the board's last event, not to post it twice
        self._key = {"key_present": True, "key_lend": False}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._refusal = ""
        self._told_down = False  # the core heard the link is down since it was last up
        self._bad_logged = 0.0
        self._bad_unlogged = 0
        self.counters = {"commands": 0, "retries": 0, "bad_frames": 0, "duplicates": 0}

    # ---- the Body port ------------------------------------------------------------------------

    def start(self, post: Post) -> None:
        self._post = post
        for target in (self._supervise, self._read):
            thread = threading.Thread(target=target, name=f"board-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def apply(self, effect: Effect) -> None:
        try:
            cmd = to_command(effect)
        except ValueError as exc:
            log.error("board: %s; not sent", exc)
            return
        if cmd is None:
            return
        name, args = cmd
        if not self._up:
            (log.warning if self._ever_up else log.info)(
                "board link down: %s not sent (the outputs of the state go out again when the "
                "link is up)",
                type(effect).__name__,
            )
            return
        try:
            self.command(name, *args)
        except BoardRefused as exc:
            log.error("board: %s", exc)
        except BoardLinkError as exc:
            log.warning("board: %s not applied: %s", type(effect).__name__, exc)
            self._down(str(exc))

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self._close_port()

    # ---- more than the port asks for ----------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    def status_fields(self) -> dict[str, Any]:
        return {"board": self.status()}

    def status(self) -> dict[str, Any]:
        board = self._board
        return {
            "url": self.url,
            "up": self._up,
            "board": None if board is None else self._describe(board),
            **self.counters,
        }

    def keybox(self, locked: bool) -> None:
        self.command("keybox", 1 if locked else 0)

    def tone(self, name: str) -> None:
        if name not in link.TONES:
            raise ValueError(f"tone: the board has no tone {name!r}; it has {link.TONES}")
        self.command("tone", link.TONES.index(name))

    def command(self, name: str, *args: int, connecting: bool = False) -> bytes:
        """Send one command and wait for its acknowledgement, trying `tries` times in all;
        returns the data of the ACK. Raises BoardLinkError (no answer, or the link is down and
        this is not the hello that brings it up) or BoardRefused."""
        t = self.timing
        with self._command_lock:
            if not (self._up or connecting):  # it went down while this one waited its turn
                raise BoardLinkError(f"the link is down: {name} not sent")
            self._seq = self._seq % 255 + 1
            seq = self._seq
            wire = link.command(seq, name, *args)
            self.counters["commands"] += 1
            answer = None
            for attempt in range(t.tries):
                if attempt:
                    self.counters["retries"] += 1
                    log.debug("board: no answer to %s (frame %d), sending it again", name, seq)
                with self._reply:
                    self._waiting, self._answer = seq, None
                self._write(wire)
                with self._reply:
                    self._reply.wait_for(lambda: self._answer is not None, t.ack_timeout_s)
                    answer, self._waiting = self._answer, None
                if answer is not None:
                    break
            if answer is None:
                raise BoardLinkError(f"no answer to {name} after {t.tries} tries")
        status = answer.payload[0] if answer.payload else link.BAD_ARGS
        if status != link.OK:
            what = link.STATUS_NAMES[status] if status < len(link.STATUS_NAMES) else status
            raise BoardRefused(f"the board refused {name}{args}: {what}")
        return bytes(answer.payload[1:])

    # ---- the wire ----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            raise BoardLinkError(f"{self.url} is not open")
        try:
            with self._write_lock:
                port.write(data)
            self._last_tx = time.monotonic()
        except (serial.SerialException, OSError) as exc:
            self._port_failed(exc)
            raise BoardLinkError(f"{self.url}: {exc}") from None

    def _open(self) -> bool:
        try:
            port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=0.05, write_timeout=1.0
            )
            port.reset_input_buffer()  # what came before us (a boot hello long ago) is stale
        except (serial.SerialException, OSError, ValueError) as exc:
            self._refuse(f"cannot open {self.url}: {exc}")
            return False
        self._port = port
        log.info("board: %s open", self.url)
        return True

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def _port_failed(self, exc: Exception) -> None:
        if self._port is not None:
            log.warning("board: %s failed (%s); opening it again", self.url, exc)
        self._close_port()
        self._down(f"serial port: {exc}")

    def _read(self) -> None:
        decoder = link.Decoder()
        while not self._stopping.is_set():
            port = self._port
            if port is None:
                self._stopping.wait(0.05)
                decoder = link.Decoder()
                continue
            try:
                data = port.read(port.in_waiting or 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if self._port is port and not self._stopping.is_set():
                    self._port_failed(exc)
                continue
            for item in decoder.feed(data):
                if isinstance(item, link.FrameError):
                    self._bad_frame(item)
                else:
                    self._frame(item)

    def _bad_frame(self, error: link.FrameError) -> None:
        """X-SEC-3: refused with a clear log line; a burst of noise is summed up once a second."""
        self.counters["bad_frames"] += 1
        now = time.monotonic()
        if now - self._bad_logged < 1.0:
            self._bad_unlogged += 1
            return
        more = (
            f" (and {self._bad_unlogged} more since the last report)" if self._bad_unlogged else ""
        )
        log.warning("board: dropped a bad frame from the line: %s: %s%s", error.reason, error, more)
        self._bad_logged, self._bad_unlogged = now, 0

    def _frame(self, frame: link.Frame) -> None:
        if frame.kind == link.ACK:
            with self._reply:
                if frame.seq == self._waiting and self._answer is None:
                    self._answer = frame
                    self._reply.notify_all()
            return
        if frame.kind == link.HELLO:
            self._board_hello(frame)
            return
        if frame.kind not in (link.INPUT, link.LINK_LOST):
            log.warning("board: unexpected frame type 0x%02x; ignored", frame.kind)
            return
        with contextlib.suppress(BoardLinkError):
            self._write(link.ack(frame.seq))
        if frame.seq == self._board_seq:
            self.counters["duplicates"] += 1
            return  # our ACK was lost: the board sent it again
        self._board_seq = frame.seq
        try:
            if frame.kind == link.INPUT:
                self._board_input(*link.parse_input(frame.payload))
            else:
                (lost_ms,) = struct.unpack(">I", frame.payload)
                log.warning(
                    "board: it had no heartbeat from this unit for %.1f s and held its outputs",
                    lost_ms / 1000,
                )
                self._lost_ms = lost_ms
                self._ask_resync("board_lost_heartbeat")
        except (ValueError, struct.error) as exc:
            log.warning("board: malformed event refused: %s", exc)

    def _board_hello(self, frame: link.Frame) -> None:
        """The board says hello by itself when it boots: it restarted under us."""
        try:
            hello = link.Hello.parse(frame.payload)
        except ValueError as exc:
            log.warning("board: malformed hello refused: %s", exc)
            return
        if self._board is None or hello.boot_id != self._board.boot_id:
            log.warning("board: it restarted (reset cause: %s)", hello.cause)
            self._ask_resync("board_restarted")

    def _board_input(self, name: str, value: bool, t_ms: int) -> None:
        log.info("board: %s %s (board time %d ms)", name, "on" if value else "off", t_ms)
        for event in self._inputs_of(name, value):
            self._post_input(event)

    def _inputs_of(self, name: str, value: bool) -> list[Input]:
        if name in DOORS:
            return [DoorChanged(DOORS[name], value)]
        if name in self._key:
            self._key[name] = value
            position = "lend" if self._key["key_lend"] else "return"
            return [KeyChanged(self._key["key_present"], position)]
        kinds: dict[str, type[EngineChanged | BrakeChanged | LightsChanged]] = {
            "engine": EngineChanged,
            "brake": BrakeChanged,
            "lights": LightsChanged,
        }
        return [kinds[name](value)]

    def _post_input(self, event: Input) -> None:
        if self._post is not None:
            self._post(event)

    # ---- the link's life ----------------------------------------------------------------------

    def _ask_resync(self, reason: str) -> None:
        self._resync = self._resync or reason
        self._wake.set()

    def _down(self, reason: str) -> None:
        was_up, self._up = self._up, False
        if was_up:
            log.warning(
                "board link down: %s; the board holds its outputs, the unit sends them again "
                "when the link is back",
                reason,
            )
        self._tell_down(reason)
        self._wake.set()

    def _refuse(self, message: str) -> None:
        """A reason not to use the board: logged once, not at every attempt."""
        if message != self._refusal:
            log.error("board: %s", message)
            self._refusal = message
        self._tell_down(message)

    def _tell_down(self, reason: str) -> None:
        """The core hears of a link down once per outage (an event for the operator)."""
        if not self._told_down:
            self._told_down = True
            self._post_input(BoardLinkChanged(False, reason))

    def _supervise(self) -> None:
        t = self.timing
        while not self._stopping.is_set():
            if self._port is None and not self._open():
                self._stopping.wait(t.reconnect_s)
                continue
            if not self._up or self._resync:
                if not self._connect():
                    self._stopping.wait(t.reconnect_s)
                continue
            self._wake.wait(max(0.0, self._last_tx + t.heartbeat_s - time.monotonic()))
            self._wake.clear()
            if self._up and not self._resync and time.monotonic() - self._last_tx >= t.heartbeat_s:
                self._heartbeat()

    def _heartbeat(self) -> None:
        try:
            data = self.command("heartbeat")
        except BoardLinkError as exc:
            self._down(f"no heartbeat answer ({exc})")
            return
        except BoardRefused as exc:
            log.error("board: %s", exc)
            return
        board = self._board
        if len(data) == 2 and board is not None and struct.unpack(">H", data)[0] != board.boot_id:
            log.warning("board: it restarted (a new boot id in its heartbeat answer)")
            self._ask_resync("board_restarted")

    def _connect(self) -> bool:
        """Hello, version check, every input, then the link is up and the core told so."""
        was_up, asked = self._up, self._resync
        try:
            hello = link.Hello.parse(self.command("hello", link.VERSION, connecting=True))
            problem = self._check(hello)
            if not problem:
                status = link.Status.parse(self.command("status", connecting=True))
        except (BoardLinkError, BoardRefused, ValueError) as exc:
            problem = f"no working link on {self.url}: {exc}"
        if problem:
            self._up = False
            self._refuse(problem)
            return False
        self._refusal, self._told_down = "", False
        if self._board is not None and hello.boot_id != self._board.boot_id:
            reason = "board_restarted"  # whatever else was noticed first
        elif not was_up:
            reason = "reconnected" if self._ever_up else "connected"
        else:
            reason = asked  # the link was fine for the unit; the board asked (it lost us)
        self._board, self._board_seq = hello, None
        self._resync = ""
        lost_ms = self._lost_ms if self._lost_ms is not None else hello.lost_ms
        self._lost_ms = None
        log.info(
            "board link up (%s): %s firmware %s, pin map %s, build %s, reset cause %s%s",
            reason,
            hello.board,
            hello.firmware,
            hello.pinmap,
            hello.build or "-",
            hello.cause,
            f"; it went {lost_ms / 1000:.1f} s without heartbeat and held its outputs"
            if lost_ms
            else "",
        )
        inputs = status.inputs()
        self._key = {"key_present": inputs["key_present"], "key_lend": inputs["key_lend"]}
        for name in link.INPUTS:
            if name != "key_lend":  # the key is one input of the core: posted with key_present
                for event in self._inputs_of(name, inputs[name]):
                    self._post_input(event)
        self._up = self._ever_up = True
        details = {**self._describe(hello), "lost_ms": lost_ms}
        self._post_input(BoardLinkChanged(True, reason, details))
        return True

    def _check(self, hello: link.Hello) -> str:
        """Why this board cannot be used, or "" when it can."""
        if hello.version != link.VERSION:
            return (
                f"board {hello.board!r} speaks link version {hello.version}, this unit "
                f"{link.VERSION}: not using it (flash the board's firmware to match)"
            )
        if firmware_version(hello.firmware) < MIN_FIRMWARE:
            oldest = ".".join(map(str, MIN_FIRMWARE))
            return (
                f"board {hello.board!r} runs firmware {hello.firmware!r}, older than {oldest}: "
                "not using it"
            )
        if not hello.board or not hello.pinmap:
            return "the board did not name itself or its pin map: not using it"
        return ""

    @staticmethod
    def _describe(hello: link.Hello) -> dict[str, Any]:
        return {
            "name": hello.board,
            "firmware": hello.firmware,
            "pinmap": hello.pinmap,
            "build": hello.build,  # the flashed manifest's build id ("": not flashed by kagi)
            "boot_id": hello.boot_id,
            "reset_cause": hello.cause,
        }

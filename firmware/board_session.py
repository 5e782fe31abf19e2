"""The car unit's end of the board link, without I/O: the host's counterpart of the board's
`Peer` (`boards/common/app.py`).

It frames commands and numbers them, resends one not acknowledged, acknowledges the board's
events and drops their repeats, says hello and checks the board's answer, heartbeats, and decides
when the link is up or down. Bytes go in with `receive(data, now)` and come out of
`data_to_send()`; time is only what the caller passes (`tick(now)` when `next_deadline()` falls
due); what the runner must hear comes out of `inputs_to_post()`. `firmware.board_link` is the
serial transport around it.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
from firmware.prompts import BY_ID

log = logging.getLogger(__name__)

MIN_FIRMWARE = (0, 1, 0)  # the oldest board firmware this unit works with
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


def describe(hello: link.Hello) -> dict[str, Any]:
    """What the board said of itself, as `status()` and `BoardLinkChanged` carry it."""
    return {
        "name": hello.board,
        "firmware": hello.firmware,
        "pinmap": hello.pinmap,
        "build": hello.build,  # the flashed manifest's build id ("": not flashed by kagi)
        "boot_id": hello.boot_id,
        "reset_cause": hello.cause,
    }


@dataclass(eq=False)
class Command:
    """One command to the board. Once `done`: the data of its ACK (`answer`), or why there is
    none (`error`: BoardLinkError, or BoardRefused for an ACK with an error status)."""

    name: str
    args: tuple[int, ...] = ()
    connecting: bool = False  # part of the hello that brings the link up: sent while it is down
    then: Callable[[Command, float], None] | None = field(default=None, repr=False)
    seq: int = 0  # its frame's SEQ, once sent
    answer: bytes | None = None
    error: BoardLinkError | BoardRefused | None = None

    @property
    def done(self) -> bool:
        return self.answer is not None or self.error is not None

    def result(self) -> bytes:
        """The ACK's data; raises the error."""
        if self.error is not None:
            raise self.error
        assert self.answer is not None, f"{self.name}: not answered yet"
        return self.answer


class BoardSession:
    """The link's logic for one board on one line, fed bytes and instants (seconds, any epoch).

    `url` only names the board in messages. Commands go one at a time, in order; each is sent
    `tries` times at most, `ack_timeout_s` apart, then fails (`Command.error`). While the line is
    open and the link down (or the board asked for it) the session says hello; while it is up
    and quiet for `heartbeat_s` it heartbeats.
    """

    def __init__(self, url: str, timing: LinkTiming | None = None) -> None:
        self.url = url
        self.timing = timing or LinkTiming()
        self.up = False
        self.board: link.Hello | None = None  # the hello of the board the link is up with
        self.counters = {"commands": 0, "retries": 0, "bad_frames": 0, "duplicates": 0}
        self._decoder = link.Decoder()
        self._open = False  # the transport has a line
        self._out = bytearray()
        self._inputs: list[Input] = []
        self._queue: deque[Command] = deque()
        self._sending: Command | None = None  # sent, its ACK awaited
        self._wire = b""  # its frame
        self._sent_at = 0.0
        self._tries = 0
        self._out_seq = 0
        self._last_tx = 0.0
        self._last_seq: int | None = None  # the board's last event, not to post it twice
        self._ever_up = False
        self._next_hello = float("-inf")  # a hello that failed waits reconnect_s for the next
        self._hello_from: tuple[bool, str] = (False, "")  # (up, resync) when the hello was sent
        self._resync = ""  # why the session must say hello again (the board asked for it)
        self._lost_ms: int | None = None  # the board's own report of a heartbeat loss
        self._key = {"key_present": True, "key_lend": False}
        self._refusal = ""
        self._told_down = False  # the core heard the link is down since it was last up
        self._bad_logged = float("-inf")
        self._bad_unlogged = 0

    # ---- the line ----------------------------------------------------------------------------

    def opened(self, now: float) -> None:
        """The transport has a line to the board (again): say hello."""
        self._open = True
        self._decoder = link.Decoder()
        self._next(now)

    def closed(self, reason: str, now: float) -> None:
        """The line failed: the command in flight fails, the link is down."""
        self._open = False
        self._out.clear()
        self._down(f"serial port: {reason}")
        if self._sending is not None:
            self._finish(self._sending, now, error=BoardLinkError(f"{self.url}: {reason}"))
        self._next(now)

    def open_failed(self, message: str) -> None:
        """The transport could not open the line."""
        self._refuse(message)

    def receive(self, data: bytes, now: float) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, link.FrameError):
                self._bad_frame(item, now)
            else:
                self._frame(item, now)
        self._next(now)

    def data_to_send(self) -> bytes:
        """The bytes to write on the line, in order, since the last call."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def inputs_to_post(self) -> list[Input]:
        """What the runner must hear, in order, since the last call."""
        inputs, self._inputs = self._inputs, []
        return inputs

    # ---- time --------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `tick` has something to do (None: not before the line is open)."""
        if not self._open:
            return None
        if self._sending is not None:
            return self._sent_at + self.timing.ack_timeout_s
        if not self.up or self._resync:
            return self._next_hello
        return self._last_tx + self.timing.heartbeat_s

    def tick(self, now: float) -> None:
        """Send the command not acknowledged again (or fail it); a hello or heartbeat when due."""
        cmd, t = self._sending, self.timing
        if cmd is not None and now >= self._sent_at + t.ack_timeout_s:
            if self._tries < t.tries:
                self._tries += 1
                self.counters["retries"] += 1
                log.debug("board: no answer to %s (frame %d), sending it again", cmd.name, cmd.seq)
                self._send(now)
            else:
                error = BoardLinkError(f"no answer to {cmd.name} after {t.tries} tries")
                self._finish(cmd, now, error=error)
        self._next(now)

    # ---- what the unit asks ------------------------------------------------------------------

    def command(self, name: str, *args: int, now: float, connecting: bool = False) -> Command:
        """Queue one command (sent at once when none is in flight). A command that is not
        `connecting` fails while the link is down."""
        link.command(0, name, *args)  # raises here for a name or arguments the link has not
        cmd = Command(name, args, connecting)
        self._queue.append(cmd)
        self._next(now)
        return cmd

    def apply(self, effect: Effect, now: float) -> Command | None:
        """One output of the core as a command, or None when nothing is sent (not an output, or
        the link is down). Its failure is logged, and an unanswered one takes the link down."""
        try:
            cmd = to_command(effect)
        except ValueError as exc:
            log.error("board: %s; not sent", exc)
            return None
        if cmd is None:
            return None
        name, args = cmd
        what = type(effect).__name__
        if not self.up:
            (log.warning if self._ever_up else log.info)(
                "board link down: %s not sent (the outputs of the state go out again when the "
                "link is up)",
                what,
            )
            return None

        def applied(cmd: Command, _now: float) -> None:
            try:
                cmd.result()
            except BoardRefused as exc:
                log.error("board: %s", exc)
            except BoardLinkError as exc:
                log.warning("board: %s not applied: %s", what, exc)
                self._down(str(exc))

        command = Command(name, args, then=applied)
        self._queue.append(command)
        self._next(now)
        return command

    # ---- commands on the wire ----------------------------------------------------------------

    def _next(self, now: float) -> None:
        """With no command in flight: send the next one waiting, else a hello or a heartbeat
        when due."""
        while self._sending is None:
            if self._queue:
                cmd = self._queue.popleft()
                if not (self.up or cmd.connecting):
                    error = BoardLinkError(f"the link is down: {cmd.name} not sent")
                    self._finish(cmd, now, error=error)
                    continue
                self._out_seq = self._out_seq % 255 + 1
                cmd.seq = self._out_seq
                self.counters["commands"] += 1
                if not self._open:
                    self._finish(cmd, now, error=BoardLinkError(f"{self.url} is not open"))
                    continue
                self._sending, self._tries = cmd, 1
                self._wire = link.command(cmd.seq, cmd.name, *cmd.args)
                self._send(now)
            elif not self._open:
                return
            elif not self.up or self._resync:
                if now < self._next_hello:
                    return
                self._hello_from = (self.up, self._resync)
                self._queue.append(Command("hello", (link.VERSION,), True, self._hello_answered))
            elif now >= self._last_tx + self.timing.heartbeat_s:
                self._queue.append(Command("heartbeat", then=self._heartbeat_answered))
            else:
                return

    def _send(self, now: float) -> None:
        self._write(self._wire, now)
        self._sent_at = now

    def _write(self, data: bytes, now: float) -> None:
        self._out += data
        self._last_tx = now

    def _finish(
        self,
        cmd: Command,
        now: float,
        answer: bytes | None = None,
        error: BoardLinkError | BoardRefused | None = None,
    ) -> None:
        if cmd is self._sending:
            self._sending = None
        cmd.answer, cmd.error = answer, error
        if cmd.then is not None:
            cmd.then(cmd, now)

    def _acknowledged(self, frame: link.Frame, now: float) -> None:
        cmd = self._sending
        if cmd is None or frame.seq != cmd.seq:
            return  # late: an answer to a command given up on
        status = frame.payload[0] if frame.payload else link.BAD_ARGS
        if status != link.OK:
            what = link.STATUS_NAMES[status] if status < len(link.STATUS_NAMES) else status
            error = BoardRefused(f"the board refused {cmd.name}{cmd.args}: {what}")
            self._finish(cmd, now, error=error)
        else:
            self._finish(cmd, now, answer=bytes(frame.payload[1:]))

    # ---- what arrives ------------------------------------------------------------------------

    def _bad_frame(self, error: link.FrameError, now: float) -> None:
        """X-SEC-3: refused with a clear log line; a burst of noise is summed up once a second."""
        self.counters["bad_frames"] += 1
        if now - self._bad_logged < 1.0:
            self._bad_unlogged += 1
            return
        more = (
            f" (and {self._bad_unlogged} more since the last report)" if self._bad_unlogged else ""
        )
        log.warning("board: dropped a bad frame from the line: %s: %s%s", error.reason, error, more)
        self._bad_logged, self._bad_unlogged = now, 0

    def _frame(self, frame: link.Frame, now: float) -> None:
        if frame.kind == link.ACK:
            self._acknowledged(frame, now)
            return
        if frame.kind == link.HELLO:
            self._board_hello(frame)
            return
        if frame.kind not in (link.INPUT, link.LINK_LOST):
            log.warning("board: unexpected frame type 0x%02x; ignored", frame.kind)
            return
        self._write(link.ack(frame.seq), now)
        if frame.seq == self._last_seq:
            self.counters["duplicates"] += 1
            return  # our ACK was lost: the board sent it again
        self._last_seq = frame.seq
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
        if self.board is None or hello.boot_id != self.board.boot_id:
            log.warning("board: it restarted (reset cause: %s)", hello.cause)
            self._ask_resync("board_restarted")

    def _board_input(self, name: str, value: bool, t_ms: int) -> None:
        log.info("board: %s %s (board time %d ms)", name, "on" if value else "off", t_ms)
        self._inputs += self._inputs_of(name, value)

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

    # ---- the link's life ---------------------------------------------------------------------

    def _heartbeat_answered(self, cmd: Command, _now: float) -> None:
        try:
            data = cmd.result()
        except BoardLinkError as exc:
            self._down(f"no heartbeat answer ({exc})")
            return
        except BoardRefused as exc:
            log.error("board: %s", exc)
            return
        board = self.board
        if len(data) == 2 and board is not None and struct.unpack(">H", data)[0] != board.boot_id:
            log.warning("board: it restarted (a new boot id in its heartbeat answer)")
            self._ask_resync("board_restarted")

    def _hello_answered(self, cmd: Command, now: float) -> None:
        try:
            hello = link.Hello.parse(cmd.result())
        except (BoardLinkError, BoardRefused, ValueError) as exc:
            self._not_connected(f"no working link on {self.url}: {exc}", now)
            return
        problem = self._check(hello)
        if problem:
            self._not_connected(problem, now)
            return

        def status_answered(cmd: Command, now: float) -> None:
            try:
                status = link.Status.parse(cmd.result())
            except (BoardLinkError, BoardRefused, ValueError) as exc:
                self._not_connected(f"no working link on {self.url}: {exc}", now)
                return
            self._connected(hello, status)

        self._queue.append(Command("status", (), True, status_answered))

    def _not_connected(self, problem: str, now: float) -> None:
        self.up = False
        self._refuse(problem)
        self._next_hello = now + self.timing.reconnect_s

    def _connected(self, hello: link.Hello, status: link.Status) -> None:
        """Hello and version checked, every input read: the link is up and the core told so."""
        was_up, asked = self._hello_from
        self._refusal, self._told_down = "", False
        if self.board is not None and hello.boot_id != self.board.boot_id:
            reason = "board_restarted"  # whatever else was noticed first
        elif not was_up:
            reason = "reconnected" if self._ever_up else "connected"
        else:
            reason = asked  # the link was fine for the unit; the board asked (it lost us)
        self.board, self._last_seq = hello, None
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
                self._inputs += self._inputs_of(name, inputs[name])
        self.up = self._ever_up = True
        details = {**describe(hello), "lost_ms": lost_ms}
        self._inputs.append(BoardLinkChanged(True, reason, details))

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

    def _ask_resync(self, reason: str) -> None:
        self._resync = self._resync or reason

    def _down(self, reason: str) -> None:
        was_up, self.up = self.up, False
        if was_up:
            log.warning(
                "board link down: %s; the board holds its outputs, the unit sends them again "
                "when the link is back",
                reason,
            )
        self._tell_down(reason)

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
            self._inputs.append(BoardLinkChanged(False, reason))

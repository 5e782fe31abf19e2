"""The I/O board adapter: the `Body` port over the board's serial link.

This is the serial transport; the link's logic (frames, retries, heartbeat, hello, link up or
down) is `firmware.board_session`, which does no I/O. The board is addressed by URL, as pyserial's
`serial_for_url` takes it: a device path (`/dev/ttyUSB0`), a pty, `socket://host:port`,
`rfc2217://…`. A reader thread feeds the session what the line brings, a supervisor thread opens
the line and keeps the session's time; whatever the session has to send is written, whatever it
reports (switch changes, the link going down or coming back) is posted to the runner's queue.
Its threads only ever post; `apply` runs on the runner's thread and waits for the board's ACK.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import serial

from boards.common import link
from firmware.board_session import (
    DOORS,
    MIN_FIRMWARE,
    BoardLinkError,
    BoardRefused,
    BoardSession,
    Command,
    LinkTiming,
    describe,
    firmware_version,
    to_command,
)
from firmware.effects import Effect
from firmware.ports import Post

__all__ = [
    "BAUDRATE",
    "DOORS",
    "MIN_FIRMWARE",
    "BoardLink",
    "BoardLinkError",
    "BoardRefused",
    "LinkTiming",
    "check_url",
    "firmware_version",
    "to_command",
]

log = logging.getLogger(__name__)

BAUDRATE = 115200


def check_url(url: str) -> None:
    """Raises ValueError naming the problem when pyserial cannot take `url`."""
    try:
        serial.serial_for_url(url, do_not_open=True)
    except (ValueError, serial.SerialException) as exc:
        raise ValueError(f"{url!r} is not a serial port URL pyserial knows ({exc})") from None


class BoardLink:
    """The `Body` port on a serial line to the I/O board."""

    def __init__(self, url: str, timing: LinkTiming | None = None, baudrate: int = BAUDRATE):
        check_url(url)
        self.url = url
        self.timing = timing or LinkTiming()
        self.baudrate = baudrate
        self._session = BoardSession(url, self.timing)
        self.counters = self._session.counters
        self._clock = time.monotonic  # the link's own time, not the car's (that one may run fast)
        self._post: Post | None = None
        self._port: Any = None
        # The session and the writes on the port, from any thread; notified at every change, so
        # a command waiting for its ACK and the supervisor waiting for a deadline both look again.
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- the Body port ------------------------------------------------------------------------

    def start(self, post: Post) -> None:
        self._post = post
        for target in (self._supervise, self._read):
            thread = threading.Thread(target=target, name=f"board-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def apply(self, effect: Effect) -> None:
        with self._lock:
            cmd = self._session.apply(effect, self._clock())
            self._flush()
            if cmd is not None:
                self._wait(cmd)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        with self._lock:
            self._close_port()

    # ---- more than the port asks for ----------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._session.up

    def status_fields(self) -> dict[str, Any]:
        return {"board": self.status()}

    def status(self) -> dict[str, Any]:
        board = self._session.board
        return {
            "url": self.url,
            "up": self._session.up,
            "board": None if board is None else describe(board),
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
        with self._lock:
            cmd = self._session.command(name, *args, now=self._clock(), connecting=connecting)
            self._flush()
            self._wait(cmd)
        return cmd.result()

    # ---- the session on the wire ---------------------------------------------------------------

    def _wait(self, cmd: Command) -> None:
        """Under the lock, until `cmd` is done; it keeps the session's time itself (the
        supervisor may be busy opening the port)."""
        while not cmd.done:
            due = self._session.next_deadline()
            self._lock.wait(
                self.timing.ack_timeout_s if due is None else max(0.0, due - self._clock())
            )
            self._tick()

    def _tick(self) -> None:
        self._session.tick(self._clock())
        self._flush()

    def _flush(self) -> None:
        """Under the lock: write what the session has to send, post what it reports."""
        data = self._session.data_to_send()
        port = self._port
        if data and port is not None:
            try:
                port.write(data)
            except (serial.SerialException, OSError) as exc:
                self._port_failed(exc)
        for event in self._session.inputs_to_post():
            if self._post is not None:
                self._post(event)
        self._lock.notify_all()

    def _open(self) -> bool:
        try:
            port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=0.05, write_timeout=1.0
            )
            port.reset_input_buffer()  # what came before us (a boot hello long ago) is stale
        except (serial.SerialException, OSError, ValueError) as exc:
            with self._lock:
                self._session.open_failed(f"cannot open {self.url}: {exc}")
                self._flush()
            return False
        log.info("board: %s open", self.url)
        with self._lock:
            self._port = port
            self._session.opened(self._clock())
            self._flush()
        return True

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def _port_failed(self, exc: Exception) -> None:
        """Under the lock (the caller flushes)."""
        if self._port is not None:
            log.warning("board: %s failed (%s); opening it again", self.url, exc)
        self._close_port()
        self._session.closed(str(exc), self._clock())

    def _read(self) -> None:
        while not self._stopping.is_set():
            port = self._port
            if port is None:
                self._stopping.wait(0.05)
                continue
            try:
                data = port.read(port.in_waiting or 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                with self._lock:
                    if self._port is port and not self._stopping.is_set():
                        self._port_failed(exc)
                        self._flush()
                continue
            if data:
                with self._lock:
                    if self._port is port:
                        self._session.receive(data, self._clock())
                        self._flush()

    def _supervise(self) -> None:
        """Opens the port (again), and ticks the session when its deadline falls due."""
        while not self._stopping.is_set():
            if self._port is None and not self._open():
                self._stopping.wait(self.timing.reconnect_s)
                continue
            with self._lock:
                self._tick()
                if self._stopping.is_set() or self._port is None:
                    continue
                due = self._session.next_deadline()
                self._lock.wait(
                    self.timing.reconnect_s if due is None else max(0.0, due - self._clock())
                )

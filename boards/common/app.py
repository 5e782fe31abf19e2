"""The I/O board's firmware: the link task, the input and output tasks and the watchdog.

`main(pins)` builds the machine objects from a board's pin map (`boards/<board>/pins.py`, data
only) and runs. `Peer` is the board's end of the link, written without I/O so tests can drive it
with chosen bytes and instants. The board knows nothing about trips: it does what the host asks,
reports what its switches do, and when the host's heartbeat stops it holds every output as it is
(it never unlocks by itself) and reports the loss when the host is back.
"""

import asyncio
import json
import os
import struct
import time

import link
import machine
from outputs import Outputs
from switches import Switches

# For the type checker only: MicroPython has neither module and never evaluates annotations.
try:
    from collections.abc import Callable
    from typing import Any
except ImportError:
    pass

FIRMWARE = "0.1.0"

DEFAULTS = {
    "debounce_ms": 30,  # a switch counts once it held this long
    "pulse_ms": 300,  # door lock / unlock relay pulse
    "heartbeat_timeout_ms": 2000,  # no frame from the host this long: the link is lost
    "event_retry_ms": 200,  # an input event not acknowledged is sent again after this
    "watchdog_ms": 4000,  # machine.WDT timeout (esp32: at least 1000)
    "input_poll_ms": 5,
    "output_tick_ms": 10,
    "host_baudrate": 115200,
    "led_error_ms": 1500,  # a refused tap's error pattern shows at least this long
    "led_accepted_ms": 500,  # an accepted tap's solid red shows at least this long
}
HELD_FILE = "held.json"  # the held outputs, so that a reset changes none of them
MANIFEST_FILE = "manifest.json"  # written last by `kagi board flash`: what was flashed
MAX_EVENTS = 32
PULLS = {"up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN}


def ticks() -> int:
    """The board's clock in ms (it wraps: compare with time.ticks_diff). An int at run time; the
    stubs make it an opaque type, and the board code passes plain ints in tests."""
    return time.ticks_ms()  # type: ignore[return-value]


def log(message: str) -> None:
    print(ticks(), message)


class Peer:
    """The board's end of the link: answers commands once each, sends events until acknowledged,
    and watches the host's heartbeat.

    `write(bytes)` sends on the line; `apply(name, args, now)` carries out a command and returns
    the data of its acknowledgement (raising link.CommandError to refuse it).
    """

    def __init__(
        self,
        write: Callable[[bytes], Any],
        apply: Callable[[str, tuple[int, ...], int], bytes],
        hello: link.Hello,
        settings: dict[str, int],
        now: int,
    ) -> None:
        self._write = write
        self._apply = apply
        self.hello = hello
        self.timeout_ms = settings["heartbeat_timeout_ms"]
        self.retry_ms = settings["event_retry_ms"]
        self.decoder = link.Decoder()
        self.last_seq = -1  # the host's last frame that was applied
        self.last_ack = b""
        self.last_rx = now
        self.contact = False  # a host has spoken since boot
        self.lost = False
        self.lost_since = now
        self.unreported_ms = 0
        self.events: list[tuple[int, bytes]] = []
        self.out_seq = 0
        self.sending: tuple[int, int, bytes] | None = None  # (seq, type, payload) awaiting ACK
        self.sent_at = now
        self.bad_frames = 0
        self.duplicates = 0

    # ---- what arrives ----

    def receive(self, data: bytes, now: int) -> None:
        for item in self.decoder.feed(data):
            if isinstance(item, link.FrameError):
                self.bad_frames += 1
                log(f"link: dropped a bad frame ({item.reason}: {item})")
            else:
                self._frame(item, now)

    def _frame(self, frame: link.Frame, now: int) -> None:
        self.last_rx = now
        self.contact = True
        hello = frame.kind == link.COMMANDS["hello"][0]
        if self.lost:
            self.lost = False
            lost_ms = time.ticks_diff(now, self.lost_since)
            log(f"link: the host is back after {lost_ms} ms without heartbeat")
            if hello:
                self.unreported_ms = lost_ms  # told in the hello's answer
            else:
                self.events.insert(0, (link.LINK_LOST, struct.pack(">I", lost_ms)))
        if frame.kind == link.ACK:
            if self.sending is not None and frame.seq == self.sending[0]:
                self.sending = None
                self.tick(now)
            return
        if hello:
            self.last_seq = -1  # a new session: its first frame is new whatever its number
        if frame.seq == self.last_seq:
            self.duplicates += 1
            log(f"link: frame {frame.seq} came again: answered again, not applied again")
            self._write(self.last_ack)
            return
        try:
            if hello:
                reply = link.ack(frame.seq, link.OK, self._hello_payload(frame))
            else:
                name, args = link.parse_command(frame)
                reply = link.ack(frame.seq, link.OK, self._apply(name, args, now))
        except link.CommandError as exc:
            log(f"link: refused frame {frame.seq}: {exc}")
            reply = link.ack(frame.seq, exc.status)
        self.last_seq, self.last_ack = frame.seq, reply
        self._write(reply)
        self.tick(now)  # an event waiting (a loss to report) goes out now

    def _hello_payload(self, frame: link.Frame) -> bytes:
        if frame.payload != bytes([link.VERSION]):
            log(f"link: the host speaks link {frame.payload.hex()}, this board {link.VERSION}")
        self.hello.lost_ms, self.unreported_ms = self.unreported_ms, 0
        return self.hello.payload()

    # ---- what leaves ----

    def event(self, kind: int, payload: bytes, now: int) -> None:
        if len(self.events) >= MAX_EVENTS:
            self.events.pop(0)
            log("link: event queue full: dropped the oldest (the host reads all on resync)")
        self.events.append((kind, payload))
        self.tick(now)

    def tick(self, now: int) -> None:
        """Notice a lost heartbeat; send the next event, or the one not acknowledged again."""
        if self.contact and not self.lost and time.ticks_diff(now, self.last_rx) > self.timeout_ms:
            self.lost, self.lost_since = True, self.last_rx
            log(f"link: no heartbeat for {self.timeout_ms} ms: holding every output as it is")
        if self.lost or not self.contact:
            return
        if self.sending is None and self.events:
            kind, payload = self.events.pop(0)
            self.out_seq = self.out_seq % 255 + 1
            self.sending = (self.out_seq, kind, payload)
        elif self.sending is None or time.ticks_diff(now, self.sent_at) < self.retry_ms:
            return
        seq, kind, payload = self.sending
        self._write(link.encode(seq, kind, payload))
        self.sent_at = now


def load_held() -> dict[str, bool]:
    """The held outputs saved before a reset; a board that never saved any starts immobilised,
    its key box locked."""
    try:
        with open(HELD_FILE) as f:
            held = json.load(f)
        return {"immobiliser": bool(held["immobiliser"]), "keybox": bool(held["keybox"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {"immobiliser": True, "keybox": True}


def load_build() -> str:
    """The build id of the manifest `kagi board flash` wrote, reported in the hello; "" when the
    board was not flashed by it (or the manifest is unreadable: the unit then sees no build)."""
    try:
        with open(MANIFEST_FILE) as f:
            build = json.load(f)["build"]
        return build if isinstance(build, str) and len(build) <= 16 else ""
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def save_held(immobiliser: bool, keybox: bool) -> None:
    tmp = HELD_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"immobiliser": immobiliser, "keybox": keybox}, f)
    os.rename(tmp, HELD_FILE)


class Board:
    """One board: its switches, outputs, host link and watchdog, built from a pin map."""

    def __init__(self, pins: Any, settings: dict[str, int] | None = None) -> None:
        self.settings = dict(DEFAULTS)
        for changes in (getattr(pins, "SETTINGS", {}), settings or {}):
            unknown = [name for name in changes if name not in DEFAULTS]
            if unknown:
                raise ValueError(f"board settings: no setting {unknown[0]!r}; {sorted(DEFAULTS)}")
            self.settings.update(changes)
        s = self.settings
        now = ticks()
        Pin = machine.Pin
        ins = []
        for name in link.INPUTS:
            gpio, active, pull = pins.INPUTS[name]
            ins.append((Pin(gpio, Pin.IN, PULLS.get(pull, -1)), active))
        self.switches = Switches(ins, s["debounce_ms"], now)
        relays = {name: Pin(gpio, Pin.OUT, value=0) for name, gpio in pins.OUTPUTS.items()}
        buzzer = machine.PWM(Pin(pins.BUZZER), freq=2000, duty_u16=0)
        v = pins.VOICE_UART
        voice = machine.UART(v["id"], baudrate=v["baudrate"], tx=Pin(v["tx"]), rx=Pin(v["rx"]))
        h = pins.HOST_UART
        self.host = machine.UART(
            h["id"], baudrate=s["host_baudrate"], tx=Pin(h["tx"]), rx=Pin(h["rx"])
        )
        held = load_held()
        holds = {
            link.LED_PATTERNS.index("error"): s["led_error_ms"],
            link.LED_PATTERNS.index("red_solid"): s["led_accepted_ms"],
        }
        self.outputs = Outputs(
            relays, buzzer, voice, s["pulse_ms"], now, held["immobiliser"], held["keybox"], holds
        )
        self.boot_id = struct.unpack(">H", os.urandom(2))[0]
        cause = machine.reset_cause()
        build = load_build()
        hello = link.Hello(
            link.VERSION, self.boot_id, cause, 0, pins.BOARD, FIRMWARE, pins.PINMAP, build
        )
        self.peer = Peer(self.host.write, self.apply, hello, s, now)
        self._alive = 0
        log(
            f"board {pins.BOARD} firmware {FIRMWARE} pin map {pins.PINMAP}"
            f" build {build or '-'}, reset: {hello.cause}"
        )

    def apply(self, name: str, args: tuple[int, ...], now: int) -> bytes:
        out = self.outputs
        if name == "heartbeat":
            return struct.pack(">H", self.boot_id)
        if name == "status":
            status = link.Status(
                self.switches.bits(),
                now,
                out.immobiliser,
                out.keybox,
                out.led,
                out.hazard_left(now),
            )
            return status.payload()
        log(f"command {name} {args}")
        if name == "lock":
            out.lock(now)
        elif name == "unlock":
            out.unlock(now)
        elif name in ("immobiliser", "keybox"):
            before = (out.immobiliser, out.keybox)
            if name == "immobiliser":
                out.set_immobiliser(args[0] == 1, now)
            else:
                out.set_keybox(args[0] == 1, now)
            if (out.immobiliser, out.keybox) != before:  # spare the flash a rewrite
                save_held(out.immobiliser, out.keybox)
        elif name == "hazard":
            out.set_hazard(args[0], now)
        elif name == "led":
            out.set_led(args[0], now)
        elif name == "tone":
            out.play_tone(args[0], now)
        elif name == "voice":
            out.play_clip(args[0])
        return b""

    # ---- tasks ----

    async def _receive(self) -> None:
        reader = asyncio.StreamReader(self.host)
        while True:
            data = await reader.read(64)
            if data:
                self.peer.receive(data, ticks())

    async def _inputs(self) -> None:
        link_inputs = link.INPUTS
        while True:
            now = ticks()
            for i, value, since in self.switches.poll(now):
                log(f"input {link_inputs[i]} {'on' if value else 'off'}")
                self.peer.event(link.INPUT, link.input_payload(i, value, since), now)
            self._alive |= 1
            await asyncio.sleep_ms(self.settings["input_poll_ms"])

    async def _outputs(self) -> None:
        while True:
            now = ticks()
            self.outputs.tick(now)
            self.peer.tick(now)
            self._alive |= 2
            await asyncio.sleep_ms(self.settings["output_tick_ms"])

    async def _watchdog(self) -> None:
        """Fed only while the input and output tasks both go round."""
        period = self.settings["watchdog_ms"]
        wdt = machine.WDT(timeout=period)
        while True:
            if self._alive == 3:
                wdt.feed()
                self._alive = 0
            await asyncio.sleep_ms(period // 4)

    async def run(self) -> None:
        self.host.write(link.encode(0, link.HELLO, self.peer.hello.payload()))
        self._tasks = [
            asyncio.create_task(self._inputs()),
            asyncio.create_task(self._outputs()),
            asyncio.create_task(self._watchdog()),
        ]
        await self._receive()


def main(pins: Any, settings: dict[str, int] | None = None) -> None:
    asyncio.run(Board(pins, settings).run())

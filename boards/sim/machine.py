"""A simulated `machine` for the MicroPython unix port, so the board code runs unchanged in CI.

`boards/sim/run.py` puts this folder first on `sys.path`, where it shadows the port's own
`machine`. Pins, PWM, the voice UART and the watchdog talk to a rig (`boards/sim/rig.py`, the
"hardware") over a unix socket named by KAGI_SIM_RIG, one JSON object a line:

    board -> rig   {"pin": 16, "v": 1}   {"pwm": 27, "hz": 2000, "duty": 32768}
                   {"tx": 1, "hex": "7eff..."}   {"wdt": 4000}   {"feed": 1}
    rig -> board   {"pin": 6, "v": 0} (an input level)   {"ready": 1}   {"stall": 1}

A UART whose KAGI_SIM_UART<id> names a pty is real I/O on that pty (the host link). Without a
rig the pins live in memory, so `micropython boards/sim/run.py pico` also runs on its own.
`reset_cause()` is KAGI_SIM_RESET_CAUSE (the rig sets it when its watchdog restarts the board).
With KAGI_SIM_CONSOLE set, stdin is the chip's USB console (`boards/sim/chip.py`): a Ctrl-C
there interrupts the running program with KeyboardInterrupt, as on the chip, so that mpremote
can take the REPL of a board that runs its firmware.
"""

import io
import json
import os
import select
import socket
import struct
import sys
import termios
import time

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5

_POLL_IOCTL = 3  # MP_STREAM_POLL
_FILENO_IOCTL = 10  # MP_STREAM_GET_FILENO: lets select.poll wait on the fd itself

_levels = {}  # input levels the rig set, by pin id
_rig = None
_rig_poll = None
_rig_buf = b""
_last_drain = 0


def _send(message):
    if _rig is not None:
        _rig.send((json.dumps(message) + "\n").encode())


def _take(message):
    if "pin" in message:
        _levels[message["pin"]] = message["v"]
    elif "stall" in message:
        print(time.ticks_ms(), "sim: stalled by the rig (a hung board)")
        while True:  # nothing runs any more, the watchdog is not fed
            time.sleep(1)


def _drain(wait_ms=0):
    """Take what the rig sent; returns True once it said "ready"."""
    global _rig_buf, _last_drain
    ready = False
    while _rig_poll.poll(wait_ms):
        data = _rig.recv(512)
        if not data:
            raise OSError("sim: the rig closed its socket")
        _rig_buf += data
        while b"\n" in _rig_buf:
            line, _rig_buf = _rig_buf.split(b"\n", 1)
            message = json.loads(line)
            ready = ready or "ready" in message
            _take(message)
        if ready:
            break
    _last_drain = time.ticks_ms()
    return ready


def _connect(path):
    global _rig, _rig_poll
    _rig = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _rig.connect(struct.pack("H108s", socket.AF_UNIX, path.encode()))
    _rig_poll = select.poll()
    _rig_poll.register(_rig, select.POLLIN)
    if not _drain(5000):  # the rig sends every input level, then ready
        raise OSError("sim: the rig at " + path + " said nothing for 5 s")


if os.getenv("KAGI_SIM_RIG"):
    _connect(os.getenv("KAGI_SIM_RIG"))

_console = None
if os.getenv("KAGI_SIM_CONSOLE"):
    _console = select.poll()
    _console.register(sys.stdin, select.POLLIN)


def _console_interrupt():
    """A Ctrl-C on the console stops the program (bytes before it are what a host typed)."""
    while _console.poll(0):
        byte = sys.stdin.buffer.read(1)
        if byte == b"\x03":
            raise KeyboardInterrupt
        if not byte:
            return


def _fresh_inputs():
    if _console is not None:
        _console_interrupt()
    if _rig is not None and time.ticks_diff(time.ticks_ms(), _last_drain) >= 1:
        _drain()


class Pin:
    IN, OUT, OPEN_DRAIN = 0, 1, 2
    PULL_UP, PULL_DOWN = 1, 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._out = 0
        if value is not None:
            self.value(value)

    def value(self, *v):
        if v:
            self._out = 1 if v[0] else 0
            _send({"pin": self.id, "v": self._out})
            return None
        if self.mode == Pin.OUT:
            return self._out
        _fresh_inputs()
        return _levels.get(self.id, 0 if self.pull == Pin.PULL_DOWN else 1)

    def __call__(self, *v):
        return self.value(*v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __repr__(self):
        return f"Pin({self.id!r})"


class PWM:
    def __init__(self, pin, *, freq=1000, duty_u16=0):
        self.pin = pin
        self._hz = freq
        self._duty = duty_u16
        self._report()

    def _report(self):
        _send({"pwm": self.pin.id, "hz": self._hz, "duty": self._duty})

    def freq(self, *hz):
        if not hz:
            return self._hz
        self._hz = hz[0]
        self._report()

    def duty_u16(self, *duty):
        if not duty:
            return self._duty
        self._duty = duty[0]
        self._report()

    def deinit(self):
        self.duty_u16(0)


class UART(io.IOBase):
    """The host UART on a pty when KAGI_SIM_UART<id> names one; otherwise what is written is
    sent to the rig (the voice module's line) and nothing is ever read."""

    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, **kwargs):
        self.id = id
        self.baudrate = baudrate
        self._file = None
        self._fd = -1
        path = os.getenv(f"KAGI_SIM_UART{id}")
        if path:
            self._file = open(path, "r+b")  # noqa: SIM115 (held for the UART's life)
            self._fd = self._file.fileno()
            termios.setraw(self._fd)
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)

    def any(self):
        return 1 if self._file is not None and self._poll.poll(0) else 0

    def read(self, n=-1):
        if self._file is None:
            return None
        out = b""
        while (n < 0 or len(out) < n) and self._poll.poll(0):
            out += self._file.read(1)  # a pty read waits for the whole count: one at a time
        return out or None

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if not data:
            return None
        buf[: len(data)] = data
        return len(data)

    def write(self, buf):
        if self._file is None:
            _send({"tx": self.id, "hex": bytes(buf).hex()})
        else:
            self._file.write(buf)
        return len(buf)

    def ioctl(self, req, arg):
        if req == _FILENO_IOCTL and self._fd >= 0:
            return self._fd
        if req == _POLL_IOCTL:
            ready = 0
            if self._file is not None and arg & select.POLLIN and self._poll.poll(0):
                ready |= select.POLLIN
            return ready | (arg & select.POLLOUT)
        return -22  # EINVAL

    def flush(self):
        pass


class WDT:
    def __init__(self, *, id=0, timeout=5000):
        self.timeout = timeout
        _send({"wdt": timeout})

    def feed(self):
        _send({"feed": 1})


def reset_cause():
    return int(os.getenv("KAGI_SIM_RESET_CAUSE") or PWRON_RESET)


def reset():
    print(time.ticks_ms(), "sim: machine.reset()")
    sys.exit(0)


def unique_id():
    return b"kagisim0"

"""The serial link between the car unit and its I/O board: frames, their types and payloads.

Written once, in the common subset of MicroPython and CPython, and used by both ends: the board
imports it as `link` (a flat copy on its filesystem), the car unit as `boards.common.link`. So the
two ends cannot drift. No `typing`, no `__future__`: annotations are never evaluated here.

A frame on the wire is COBS-encoded between two zero bytes (the leading zero ends any garbage
the receiver may hold, so a good frame after noise is never lost):

    00 | COBS( LEN | SEQ | TYPE | PAYLOAD (LEN bytes) | CRC-32 of LEN..PAYLOAD, big-endian ) | 00

SEQ numbers a frame that needs an acknowledgement (1..255, never 0); an ACK carries the SEQ it
acknowledges and a status byte; the receiver of a repeated SEQ answers again and applies nothing.
`docs/board.md` describes the conversation.
"""

import binascii
import struct

VERSION = 1  # of this link; a board and a unit must speak the same one
MAX_PAYLOAD = 64
HEADER = 3  # LEN, SEQ, TYPE
CRC_SIZE = 4
MAX_FRAME = HEADER + MAX_PAYLOAD + CRC_SIZE
MAX_WIRE = MAX_FRAME + 2  # COBS adds one byte per 254 and one at the start

# ---- frame types ---------------------------------------------------------------------------------

HELLO = 0x01  # board -> host at boot (SEQ 0, not acknowledged): the board's identity
ACK = 0x02  # either way: SEQ is the frame acknowledged; payload: status byte, then data

# host -> board: each is acknowledged; (type, struct format of the arguments)
COMMANDS = {
    "hello": (0x10, ">B"),  # the host's link VERSION; acknowledged with the hello payload
    "heartbeat": (0x11, ""),  # acknowledged with the board's boot id (">H")
    "status": (0x12, ""),  # acknowledged with the status payload: every input, held outputs
    "lock": (0x20, ""),  # a pulse of the lock relay
    "unlock": (0x21, ""),  # a pulse of the unlock relay
    "immobiliser": (0x22, ">B"),  # 1 on (engine cannot start), 0 off; held
    "hazard": (0x23, ">B"),  # blink N times; 0 stops; KEEP_BLINKING blinks until told
    "led": (0x24, ">B"),  # index in LED_PATTERNS
    "tone": (0x25, ">B"),  # index in TONES
    "voice": (0x26, ">H"),  # play clip N on the voice module
    "keybox": (0x27, ">B"),  # 1 locked, 0 released; held
}
COMMAND_NAMES = {code: name for name, (code, _fmt) in COMMANDS.items()}

# board -> host: each is acknowledged by the host
INPUT = 0x30  # an input changed: index in INPUTS, value, board time (ms)
LINK_LOST = 0x31  # the board had no heartbeat for this many ms (sent when the link is back)

# ACK status
OK = 0
UNKNOWN = 1  # no such frame type
BAD_ARGS = 2  # wrong payload length or a value out of range
STATUS_NAMES = ("ok", "unknown command", "bad arguments")

KEEP_BLINKING = 255

# ---- what the two ends name ----------------------------------------------------------------------

# The board's inputs, in the order of the status bits; each is True when "on" as named.
INPUTS = (
    "door_driver",  # open
    "door_passenger",
    "door_rear_left",
    "door_rear_right",
    "tailgate",
    "key_present",  # the key is in the key box
    "key_lend",  # the key is turned to 貸出 (lend); off means 返却 (return)
    "engine",  # running
    "brake",  # parking brake on
    "lights",  # on
)

# Reader LED patterns of SPEC U-FB-1, by index (the unit speaks the same names).
LED_PATTERNS = (
    "dark",
    "green_blink",
    "red_solid",
    "three_colour_blink",
    "orange_blink",
    "green_yellow_blink",
    "forgotten_blink",
    "error",
)

TONES = ("chime_ok", "chime_denied", "warning", "click")

# Reset causes as machine.reset_cause() gives them (rp2 and esp32 agree on these).
RESET_CAUSES = {1: "power_on", 2: "hard", 3: "watchdog", 4: "deep_sleep", 5: "soft"}


class FrameError(ValueError):
    """Bytes that are not a frame; `reason` is one of cobs, short, length, crc, overrun."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Frame:
    def __init__(self, seq: int, kind: int, payload: bytes = b"") -> None:
        self.seq = seq
        self.kind = kind
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Frame)
            and self.seq == other.seq
            and self.kind == other.kind
            and self.payload == other.payload
        )

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, kind=0x{self.kind:02x}, payload={self.payload.hex()})"


# ---- bytes <-> frames ----------------------------------------------------------------------------


def crc(data: bytes) -> int:
    return int(binascii.crc32(data)) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out.extend(block)
            block = bytearray()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out.extend(block)
                block = bytearray()
    out.append(len(block) + 1)
    out.extend(block)
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise FrameError("cobs", f"bad byte stuffing at {i} of {n} bytes")
        out.extend(data[i + 1 : end])
        i = end
        if code < 255 and i < n:
            out.append(0)
    return bytes(out)


def encode(seq: int, kind: int, payload: bytes = b"") -> bytes:
    """The wire bytes of one frame, delimiters included."""
    if not 0 <= seq <= 255 or not 0 <= kind <= 255:
        raise ValueError(f"frame: seq and type are bytes, got {seq!r}, {kind!r}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame: payload of {len(payload)} bytes, at most {MAX_PAYLOAD}")
    body = bytes([len(payload), seq, kind]) + bytes(payload)
    return b"\x00" + cobs_encode(body + struct.pack(">I", crc(body))) + b"\x00"


def decode(chunk: bytes) -> Frame:
    """One frame from the bytes between two delimiters; raises FrameError naming what is wrong."""
    data = cobs_decode(chunk)
    if len(data) < HEADER + CRC_SIZE:
        raise FrameError("short", f"frame of {len(data)} bytes, at least {HEADER + CRC_SIZE}")
    length = data[0]
    if length > MAX_PAYLOAD or len(data) != HEADER + length + CRC_SIZE:
        raise FrameError(
            "length", f"length byte says {length}, frame holds {len(data) - HEADER - CRC_SIZE}"
        )
    body = data[:-CRC_SIZE]
    (want,) = struct.unpack(">I", data[-CRC_SIZE:])
    if crc(body) != want:
        raise FrameError("crc", f"CRC mismatch (seq {data[1]}, type 0x{data[2]:02x})")
    return Frame(data[1], data[2], bytes(data[HEADER:-CRC_SIZE]))


class Decoder:
    """Cuts a byte stream into frames. `feed()` returns what the bytes completed, in order: a
    Frame or a FrameError for each chunk. Garbage costs at most the frame it touches."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overrun = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        for byte in data:
            if byte != 0:
                if self._overrun:
                    continue
                self._buf.append(byte)
                if len(self._buf) > MAX_WIRE:
                    self._overrun = True
                    self._buf = bytearray()
                    out.append(FrameError("overrun", f"no delimiter in {MAX_WIRE} bytes"))
                continue
            chunk, self._buf = bytes(self._buf), bytearray()
            self._overrun = False
            if not chunk:
                continue  # the delimiter pair between two frames
            try:
                out.append(decode(chunk))
            except FrameError as exc:
                out.append(exc)
        return out


# ---- commands and their answers ------------------------------------------------------------------


class CommandError(ValueError):
    """A host command the board cannot take; `status` is UNKNOWN or BAD_ARGS for its ACK."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# the highest value each one-byte argument may take
LIMITS = {"immobiliser": 1, "keybox": 1, "led": len(LED_PATTERNS) - 1, "tone": len(TONES) - 1}


def command(seq: int, name: str, *args: int) -> bytes:
    """The wire bytes of a host command, e.g. `command(7, "voice", 12)`."""
    code, fmt = COMMANDS[name]
    return encode(seq, code, struct.pack(fmt, *args))


def parse_command(frame: Frame) -> tuple[str, tuple[int, ...]]:
    """A host command's name and arguments; raises CommandError for an unknown type or bad args."""
    name = COMMAND_NAMES.get(frame.kind)
    if name is None:
        raise CommandError(UNKNOWN, f"unknown frame type 0x{frame.kind:02x}")
    fmt = COMMANDS[name][1]
    size = struct.calcsize(fmt)
    if len(frame.payload) != size:
        raise CommandError(
            BAD_ARGS, f"{name}: {len(frame.payload)} argument bytes, expected {size}"
        )
    args = tuple(int(a) for a in struct.unpack(fmt, frame.payload))
    if name in LIMITS and args[0] > LIMITS[name]:
        raise CommandError(BAD_ARGS, f"{name}: {args[0]} is out of range 0..{LIMITS[name]}")
    return name, args


def ack(seq: int, status: int = OK, data: bytes = b"") -> bytes:
    return encode(seq, ACK, bytes([status]) + data)


# ---- payloads ------------------------------------------------------------------------------------


class Hello:
    """The board's identity, and a heartbeat loss it has not reported yet."""

    def __init__(
        self,
        version: int,
        boot_id: int,
        reset_cause: int,
        lost_ms: int,
        board: str,
        firmware: str,
        pinmap: str,
        build: str = "",
    ) -> None:
        self.version = version
        self.boot_id = boot_id
        self.reset_cause = reset_cause
        self.lost_ms = lost_ms
        self.board = board
        self.firmware = firmware
        self.pinmap = pinmap
        self.build = build  # the flashed manifest's build id ("" when not flashed by kagi)

    @property
    def cause(self) -> str:
        return RESET_CAUSES.get(self.reset_cause, "unknown")

    def payload(self) -> bytes:
        """VERSION, boot id, reset cause, unreported loss (ms), then three short texts, and a
        fourth, the build id of the flashed manifest, only when there is one."""
        head = struct.pack(
            ">BHBI", self.version, self.boot_id, self.reset_cause, self.lost_ms & 0xFFFFFFFF
        )
        texts = _text(self.board) + _text(self.firmware) + _text(self.pinmap)
        return head + texts + (_text(self.build) if self.build else b"")

    @staticmethod
    def parse(payload: bytes) -> "Hello":
        """Raises ValueError when the payload is malformed."""
        if len(payload) < 8:
            raise ValueError(f"hello: {len(payload)} bytes, at least 8")
        version, boot_id, cause, lost_ms = struct.unpack(">BHBI", payload[:8])
        texts = []
        i = 8
        for n in range(4):
            if n == 3 and i == len(payload):
                texts.append("")  # no build id: a board not flashed by kagi, or an older one
                break
            if i >= len(payload) or i + 1 + payload[i] > len(payload):
                raise ValueError(f"hello: truncated text at byte {i}")
            texts.append(bytes(payload[i + 1 : i + 1 + payload[i]]).decode())
            i += 1 + payload[i]
        if i != len(payload):
            raise ValueError(f"hello: {len(payload) - i} bytes too many")
        return Hello(version, boot_id, cause, lost_ms, texts[0], texts[1], texts[2], texts[3])


def _text(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 16:
        raise ValueError(f"hello: {value!r} is longer than 16 bytes")
    return bytes([len(raw)]) + raw


def input_payload(index: int, value: bool, t_ms: int) -> bytes:
    return struct.pack(">BBI", index, 1 if value else 0, t_ms & 0xFFFFFFFF)


def parse_input(payload: bytes) -> tuple[str, bool, int]:
    """(input name, value, board time in ms); raises ValueError when malformed."""
    if len(payload) != 6:
        raise ValueError(f"input: {len(payload)} bytes, expected 6")
    index, value, t_ms = struct.unpack(">BBI", payload)
    if index >= len(INPUTS) or value > 1:
        raise ValueError(f"input: no input {index} with value {value}")
    return INPUTS[index], value == 1, int(t_ms)


class Status:
    """Every input (bit i of `bits` is INPUTS[i]), the board time and the held outputs."""

    def __init__(
        self, bits: int, t_ms: int, immobiliser: bool, keybox: bool, led: int, hazard: int
    ) -> None:
        self.bits = bits
        self.t_ms = t_ms
        self.immobiliser = immobiliser
        self.keybox = keybox
        self.led = led
        self.hazard = hazard

    def inputs(self) -> dict[str, bool]:
        return {name: bool((self.bits >> i) & 1) for i, name in enumerate(INPUTS)}

    def payload(self) -> bytes:
        flags = (1 if self.immobiliser else 0) | (2 if self.keybox else 0)
        return struct.pack(
            ">HIBBB", self.bits, self.t_ms & 0xFFFFFFFF, flags, self.led, self.hazard
        )

    @staticmethod
    def parse(payload: bytes) -> "Status":
        if len(payload) != 9:
            raise ValueError(f"status: {len(payload)} bytes, expected 9")
        bits, t_ms, flags, led, hazard = struct.unpack(">HIBBB", payload)
        return Status(bits, t_ms, bool(flags & 1), bool(flags & 2), led, hazard)

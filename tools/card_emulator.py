"""An emulated FeliCa card on nfcpy's `udp` driver, for tests, benchmarks and the simulated rig.

`CardEmulator(url)` owns the card's end of a `udp:host:port` link and presents one card at a time
(`present(card)`, `remove()`, `stop()`); it runs in its own thread and stops within ~10 ms
whatever the reader does. `EmulatedCard` is the card: IDm, PMm, system code, and, for a FeliCa
Lite-S, a card key and the blocks of its memory, with the Lite-S mutual authentication worked
through the same way nfcpy's `FelicaLiteS` reader side expects. Every card records what it was
asked (`commands`, `blocks_read`, `blocks_written`), so a test can check that a reader read
nothing (SPEC U-CARD-2).

Run as a process (`kagi card emulate …`) it presents one card
for a given time, or until SIGTERM/SIGINT, and exits 0.

Pitfalls of the udp driver (see PLATFORM-NOTES) handled here: the card's socket stays bound for
the emulator's whole life (nfcpy rebinds at every listen, and a reader polling into that gap
would be refused); receives wake every 10 ms to see a removal or a stop; the response loop is
our own, never nfcpy's endless `connect(card=…)` loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import nfc
import nfc.clf
import nfc.clf.udp
import nfc.tag.tt3
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from protocol.cards import lite_s_card_key, parse_idm

log = logging.getLogger(__name__)

PLAIN_PMM = bytes.fromhex("03014B024F4993FF")  # a FeliCa Standard (RC-S915) as nfcpy's docs show
LITE_S_PMM = bytes.fromhex("00F1FFFFFFFFFFFF")  # Lite-S; FF timing bytes give udp-friendly timeouts
PLAIN_SYSTEM = bytes.fromhex("0003")  # transit (Suica and friends)
LITE_S_SYSTEM = bytes.fromhex("88B4")

READ_SERVICE, WRITE_SERVICE = 0x000B, 0x0009  # FeliCa Lite(-S): read-only and read/write
RC, MAC, ID, D_ID, SER_C, SYS_C, CKV, CK, MC = 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88
WCNT, MAC_A, STATE = 0x90, 0x91, 0x92
USER_BLOCKS = range(0x00, 0x0F)  # S_PAD0..13 and REG
UNREADABLE = (RC, CK, MAC_A)
FACTORY_MC = bytes([0xFF, 0xFF, 0xFF, 0x00]) + bytes(12)  # system blocks writable
# as `kagi card provision` leaves it: system blocks read-only, key change by MAC only
PROVISIONED_MC = bytes([0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01]) + bytes(10)

COMMAND_NAMES = {
    0x00: "polling",
    0x02: "request_service",
    0x04: "request_response",
    0x06: "read_without_encryption",
    0x08: "write_without_encryption",
    0x0A: "search_service_code",
    0x0C: "request_system_code",
    0x10: "authentication1",
    0x12: "authentication2",
    0x14: "read",
    0x16: "write",
}

TICK = 0.01  # how often a blocked receive looks up to see a removal or a stop


def _swap(block: bytes) -> bytes:
    """Lite-S keeps RC and CK as two little-endian halves; nfcpy writes them reversed."""
    return block[7::-1] + block[15:7:-1]


def _flip(key: bytes) -> bytes:
    return key[8:16] + key[0:8]


def _des3_cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Two-key triple DES (K1, K2, K1) in CBC mode, as the Lite-S chip computes it."""
    encryptor = Cipher(TripleDES(key + key[:8]), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def lite_s_mac(data: bytes, key: bytes, iv: bytes) -> bytes:
    """The card's MAC over `data`: each 8-byte group byte-reversed (the chip is little-endian),
    enciphered, and the last group reversed back. Written from the card's side on its own, so the
    emulator checks nfcpy's reader code rather than echoing it."""
    groups = b"".join(data[i : i + 8][::-1] for i in range(0, len(data), 8))
    return _des3_cbc(key, iv, groups)[-8:][::-1]


@dataclass
class EmulatedCard:
    """One card. For a Lite-S card, `key` is its card key (None: a blank card, factory key)."""

    idm: bytes
    pmm: bytes = PLAIN_PMM
    system_code: bytes = PLAIN_SYSTEM
    key: bytes | None = None
    commands: list[str] = field(default_factory=list)
    blocks_read: list[int] = field(default_factory=list)
    blocks_written: list[int] = field(default_factory=list)
    memory: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.idm) != 8 or len(self.pmm) != 8 or len(self.system_code) != 2:
            raise ValueError("a card needs an 8-byte IDm, an 8-byte PMm and a 2-byte system code")
        self._ck = bytes(16)
        if self.is_lite_s and not self.memory:
            blank = self.key is None
            self.memory = {b: bytes(16) for b in USER_BLOCKS}
            self.memory.update(
                {
                    ID: self.idm + bytes(8),
                    D_ID: self.idm + self.pmm,
                    SER_C: bytes.fromhex("4B00") + bytes(14),
                    SYS_C: self.system_code + bytes(14),
                    CKV: bytes(16),
                    MC: FACTORY_MC if blank else PROVISIONED_MC,
                    WCNT: bytes(16),
                    STATE: bytes(16),
                }
            )
            self._ck = self.key or bytes(16)
        self._power_on()

    # ---- constructors ---------------------------------------------------------------------

    @classmethod
    def plain(cls, idm: bytes, pmm: bytes = PLAIN_PMM) -> EmulatedCard:
        return cls(idm, pmm, PLAIN_SYSTEM)

    @classmethod
    def lite_s(cls, idm: bytes, key: bytes | None = None) -> EmulatedCard:
        """A Lite-S card provisioned with `key` (system blocks locked), or blank with None."""
        return cls(idm, LITE_S_PMM, LITE_S_SYSTEM, key)

    @classmethod
    def strong(cls, idm: bytes, master_key: bytes) -> EmulatedCard:
        """A Lite-S card provisioned as `kagi card provision` does, with the fleet's master key."""
        return cls.lite_s(idm, lite_s_card_key(master_key, idm))

    @property
    def is_lite_s(self) -> bool:
        return self.pmm[1] in (0xF1, 0xF2)

    @property
    def card_key(self) -> bytes:
        """The key the card holds now (what provisioning wrote)."""
        return self._ck

    @property
    def sensf_res(self) -> bytes:
        return b"\x01" + self.idm + self.pmm + self.system_code

    # ---- what the reader asked ------------------------------------------------------------

    def record(self, frame: bytes) -> None:
        """A frame from the reader (length, command code, …)."""
        if len(frame) >= 2:
            self.commands.append(COMMAND_NAMES.get(frame[1], f"command_{frame[1]:02x}"))

    # ---- Lite-S memory and authentication -------------------------------------------------

    def _power_on(self) -> None:
        """A new presentation: the card was powered up by the field; session state is gone."""
        self._sk: bytes | None = None
        self._iv: bytes | None = None
        self._mac_data = bytearray()
        self._pending: list[tuple[int, bytes]] = []
        if STATE in self.memory:
            self.memory[STATE] = bytes(16)

    def read_block(self, block: int, rb: bool, re: bool) -> bytes | None:
        self.blocks_read.append(block)
        if not self.is_lite_s:
            return bytes(16)  # a plain card's block: the reader should never have asked
        if rb:
            self._mac_data = bytearray()
        if block == MAC:
            if self._sk is None or self._iv is None:
                return None
            return lite_s_mac(bytes(self._mac_data), self._sk, self._iv) + bytes(8)
        if block in UNREADABLE or block not in self.memory:
            return None
        data = self.memory[block]
        self._mac_data += data
        return data

    def write_block(self, block: int, data: bytes, wb: bool, we: bool) -> bool:
        self.blocks_written.append(block)
        if not self.is_lite_s:
            return False
        if wb:
            self._pending = []
        self._pending.append((block, bytes(data)))
        if block == MAC_A:
            return self._write_with_mac()
        if not we:
            return True
        return all(self._write_plain(b, d) for b, d in self._pending)

    def _system_writable(self) -> bool:
        return self.memory[MC][2] == 0xFF

    def _write_plain(self, block: int, data: bytes) -> bool:
        if block in USER_BLOCKS:
            self.memory[block] = data
        elif block == RC:
            rc = _swap(data)
            self._sk = _des3_cbc(self._ck, bytes(8), rc)  # the session key
            self._iv = rc[0:8]
            self.memory[STATE] = bytes(16)
        elif block == CK and self._system_writable():
            self._ck = _swap(data)
        elif block in (CKV, MC) and self._system_writable():
            self.memory[block] = data
        else:
            return False
        return True

    def _write_with_mac(self) -> bool:
        if len(self._pending) != 2 or self._sk is None or self._iv is None:
            return False
        (block, payload), (_, mac_a) = self._pending
        wcnt = self.memory[WCNT][0:3]
        signed = wcnt + b"\x00" + bytes([block]) + b"\x00\x91\x00" + payload
        expected = lite_s_mac(signed, _flip(self._sk), self._iv)
        if mac_a[0:8] != expected or mac_a[8:11] != wcnt:
            return False
        key_change = self.memory[STATE][0] == 0x01 and self.memory[MC][5] & 0x01
        if block == STATE:
            self.memory[STATE] = bytes([payload[0] & 0x01]) + bytes(15)
        elif block in USER_BLOCKS:
            self.memory[block] = payload
        elif block == CK and key_change:
            self._ck = _swap(payload)
        elif block == CKV and key_change:
            self.memory[CKV] = payload
        else:
            return False
        count = int.from_bytes(wcnt, "little") + 1
        self.memory[WCNT] = count.to_bytes(3, "little") + bytes(13)
        return True


class _CardDevice(nfc.clf.udp.Device):  # type: ignore[misc]
    """The card's end of the udp link: one socket bound for the emulator's whole life."""

    socket: Any

    def __init__(self, host: str, port: int, emulator: CardEmulator) -> None:
        self._emulator = emulator
        self.presentation = 0  # the presentation being served: a receive ends when it does
        super().__init__(host, port)
        self._vendor_name, self._device_name, self._chipset_name = "kagi", "card emulator", "UDP"
        self._path = f"udp:{host}:{port}"
        try:
            self.socket.bind(self.addr)
        except OSError as exc:
            self.socket.close()
            raise OSError(
                exc.errno, f"cannot listen on udp:{host}:{port}: {exc.strerror}"
            ) from None

    def _bind_socket(self, time_to_return: float) -> bool:
        return True  # bound once, in __init__

    def mute(self) -> None:
        pass  # nfcpy mutes (closes the socket) before every listen: keep it bound

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def drain(self, timeout: float) -> None:
        """No card in the field: take what the reader sends and answer nothing."""
        with contextlib.suppress(nfc.clf.CommunicationError):
            nfc.clf.udp.Device._recv_data(self, timeout)

    def _recv_data(self, timeout: float | None, *brty_list: str) -> Any:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            card = self._emulator.card_of(self.presentation)
            if card is None:
                raise nfc.clf.TimeoutError("the card left the field")
            step = TICK if deadline is None else min(TICK, deadline - time.time())
            if step <= 0:
                raise nfc.clf.TimeoutError("no data received")
            try:
                brty, data, addr = super()._recv_data(step, *brty_list)
            except nfc.clf.TimeoutError:
                continue
            card.record(bytes(data))
            return brty, data, addr


class CardEmulator:
    """Presents emulated cards on `udp:host:port`, one at a time, from its own thread."""

    def __init__(self, url: str, bitrate: str = "212F") -> None:
        host, port = parse_udp_url(url)
        if bitrate not in ("212F", "424F"):
            raise ValueError(f"bitrate must be 212F or 424F, got {bitrate!r}")
        self.url = url
        self.bitrate = bitrate
        self._lock = threading.Lock()
        self._card: EmulatedCard | None = None
        self._presentation = 0
        self._stopping = threading.Event()
        self.presented_at: float | None = None  # time.perf_counter() of the last present()
        self._device = _CardDevice(host, port, self)
        self._clf = nfc.ContactlessFrontend()
        self._clf.device = self._device
        self._thread = threading.Thread(target=self._run, name=f"card-emulator {url}", daemon=True)
        self._thread.start()

    # ---- control --------------------------------------------------------------------------

    def present(self, card: EmulatedCard) -> None:
        """Put `card` in the field (replacing any card there)."""
        with self._lock:
            self._card = card
            self._presentation += 1
            self.presented_at = time.perf_counter()

    def remove(self) -> None:
        with self._lock:
            self._card = None
            self._presentation += 1

    def stop(self) -> None:
        """Take the card away, stop answering and free the port (within ~10 ms)."""
        self._stopping.set()
        self.remove()
        self._thread.join(timeout=5)
        self._device.close()

    def __enter__(self) -> CardEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def card(self) -> EmulatedCard | None:
        return self._card

    def card_of(self, presentation: int) -> EmulatedCard | None:
        """The card of that presentation while it lasts; None once it is over or on stop."""
        if self._stopping.is_set() or self._presentation != presentation:
            return None
        return self._card

    # ---- the emulator thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                card, presentation = self._card, self._presentation
            try:
                if card is None:
                    self._device.drain(TICK)
                else:
                    self._serve(card, presentation)
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("card emulator %s: unexpected error", self.url)
                time.sleep(TICK)

    def _current(self, presentation: int) -> bool:
        return not self._stopping.is_set() and self._presentation == presentation

    def _serve(self, card: EmulatedCard, presentation: int) -> None:
        self._device.presentation = presentation
        target = nfc.clf.LocalTarget(self.bitrate)
        target.sensf_res = bytearray(card.sensf_res)
        activated = self._clf.listen(target, 0.5)  # ≥ 0.5 s: shorter loses the race (notes)
        if activated is None or activated.tt3_cmd is None or not self._current(presentation):
            return
        card._power_on()
        tag = nfc.tag.tt3.Type3TagEmulation(self._clf, activated)
        tag.add_service(READ_SERVICE, card.read_block, None)
        tag.add_service(WRITE_SERVICE, card.read_block, card.write_block)
        rsp = tag.process_command(tag.cmd)
        while self._current(presentation):
            try:
                cmd = tag.send_response(rsp, 0.25)
            except nfc.clf.BrokenLinkError:
                return  # RFOFF: the reader switched its field off (it polls anew)
            except nfc.clf.CommunicationError:
                rsp = None
                continue
            rsp = tag.process_command(cmd) if cmd else None


def parse_udp_url(url: str) -> tuple[str, int]:
    """`udp:host:port` → (host, port); raises ValueError naming what is wrong."""
    parts = url.split(":")
    if len(parts) != 3 or parts[0] != "udp" or not parts[1]:
        raise ValueError(f"expected udp:HOST:PORT, got {url!r}")
    try:
        port = int(parts[2])
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{url!r}: the port must be 1..65535")
    return parts[1], port


# ---- the process -------------------------------------------------------------------------


def card_from_args(args: argparse.Namespace) -> EmulatedCard:
    """The card described by the command line; raises ValueError naming the bad option."""
    idm = parse_idm(args.idm)
    if args.lite_s_key:
        card = EmulatedCard.lite_s(idm, _hex(args.lite_s_key, "--lite-s-key", 16, exact=True))
    elif args.master_key:
        card = EmulatedCard.strong(idm, _hex(args.master_key, "--master-key", 16))
    elif args.blank_lite_s:
        card = EmulatedCard.lite_s(idm)
    else:
        card = EmulatedCard.plain(idm)
    if args.pmm:
        pmm = _hex(args.pmm, "--pmm", 8, exact=True)
        card = EmulatedCard(idm, pmm, card.system_code, card.key)
    return card


def _hex(text: str, option: str, length: int, exact: bool = False) -> bytes:
    try:
        value = bytes.fromhex(text.replace(":", "").replace(" ", ""))
    except ValueError:
        raise ValueError(f"{option}: expected hex digits, got {text!r}") from None
    if (exact and len(value) != length) or len(value) < length:
        want = f"{length} bytes" if exact else f"at least {length} bytes"
        raise ValueError(f"{option}: expected {want} ({2 * length} hex digits), got {len(value)}")
    return value


def run(args: argparse.Namespace, out: Any = sys.stderr) -> int:
    """Present the card until the time is up or SIGTERM/SIGINT: 0 when stopped, 2 on bad input."""
    try:
        card = card_from_args(args)
        parse_udp_url(args.device)
        if args.seconds is not None and args.seconds < 0:
            raise ValueError("--seconds: must not be negative")
    except ValueError as exc:
        print(f"kagi card emulate: {exc}", file=out)
        return 2
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            emulator = CardEmulator(args.device, bitrate=f"{args.bitrate}F")
        except OSError as exc:
            print(f"kagi card emulate: {exc}", file=out)
            return 2
        kind = "FeliCa Lite-S" if card.is_lite_s else "FeliCa"
        length = "until stopped" if args.seconds is None else f"for {args.seconds:g} s"
        print(
            f"kagi card emulate: presenting {kind} IDm {card.idm.hex().upper()} "
            f"PMm {card.pmm.hex().upper()} on {args.device} {length}",
            file=out,
            flush=True,
        )
        emulator.present(card)
        stop.wait(args.seconds)
        emulator.stop()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(
        f"kagi card emulate: card removed; the reader sent {len(card.commands)} commands, "
        f"read {len(card.blocks_read)} and wrote {len(card.blocks_written)} blocks",
        file=out,
        flush=True,
    )
    if args.record:
        with open(args.record, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "idm": card.idm.hex(),
                    "commands": card.commands,
                    "blocks_read": card.blocks_read,
                    "blocks_written": card.blocks_written,
                },
                f,
            )
    return 0

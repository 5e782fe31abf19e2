"""The `Reader` adapter over nfcpy: one `CardTapped` per presentation of a FeliCa card.

The device is an nfcpy path from the configuration: `usb:054c:06c1` (Sony RC-S380),
`tty:USB0:pn532`, or `udp:HOST:PORT` (an emulated card, `tools.card_emulator`). The adapter
polls FeliCa at 212 and 424 kbps and reports a card the first time it answers; a card held on the
reader is one tap, a new tap needs the card taken away (no answer for `release_after` seconds).

It reads nothing from a card but the IDm and PMm of its polling answer (SPEC U-CARD-2). The one
exception is a FeliCa Lite-S card when the unit has a card master key: the adapter then runs the
Lite-S mutual authentication with that card's own key (`protocol.cards.lite_s_card_key`) and
reports whether it succeeded; the trip core decides what a failure means.

A reader that cannot be opened, or fails while polling (unplugged), is logged once and reopened
every `reopen_interval` seconds until it is back. The thread only posts inputs (ports.py).
"""

from __future__ import annotations

import errno
import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nfc
import nfc.clf
import nfc.clf.udp
import nfc.tag
from nfc.tag import tt3_sony

from firmware.inputs import CardTapped
from firmware.ports import Post
from protocol.cards import lite_s_card_key

log = logging.getLogger(__name__)

BITRATES = ("212F", "424F")
SCHEMES = ("usb", "tty", "com", "udp")
LITE_S_IC = tuple(tt3_sony.FelicaLiteS.IC_CODE_MAP)  # PMm[1] of a FeliCa Lite-S
AUTH_ATTEMPTS = 3  # a card that stops answering mid-way is tried again before it counts as failed


class _QuietSearch(logging.Filter):
    """nfcpy logs every failed search at ERROR; while a reader is away we say it once instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("no reader available", "searching for reader"))


logging.getLogger("nfc.clf").addFilter(_QuietSearch())


def check_path(path: str) -> None:
    """Refuse a device path nfcpy cannot mean; raises ValueError naming what is wrong."""
    scheme = path.split(":", 1)[0]
    if scheme not in SCHEMES:
        raise ValueError(f"{path!r}: expected usb[:VID:PID], tty:PORT:DRIVER or udp:HOST:PORT")
    if scheme == "udp":
        parts = path.split(":")
        if (
            len(parts) != 3
            or not parts[1]
            or not parts[2].isdigit()
            or not 0 < int(parts[2]) < 65536
        ):
            raise ValueError(f"{path!r}: expected udp:HOST:PORT with a port 1..65535")
    if scheme in ("tty", "com") and len(path.split(":")) < 3:
        raise ValueError(f"{path!r}: expected {scheme}:PORT:DRIVER, e.g. tty:USB0:pn532")


@dataclass(frozen=True)
class Card:
    """What a card said when polled: nothing else is ever read from a plain card."""

    idm: bytes
    pmm: bytes
    system_code: int | None
    bitrate: str
    target: Any  # nfcpy's RemoteTarget, for talking to the card while it is still there

    @property
    def lite_s(self) -> bool:
        return self.pmm[1] in LITE_S_IC

    @property
    def kind(self) -> str:
        return card_kind(self.pmm)


def card_kind(pmm: bytes) -> str:
    """The product named by the PMm's IC code, as nfcpy knows it."""
    ic = pmm[1]
    for cls in (tt3_sony.FelicaLiteS, tt3_sony.FelicaLite, tt3_sony.FelicaPlug):
        if ic in cls.IC_CODE_MAP:
            return str(cls.IC_CODE_MAP[ic])
    for cls, family in (
        (tt3_sony.FelicaStandard, "FeliCa Standard"),
        (tt3_sony.FelicaMobile, "FeliCa Mobile"),
    ):
        if ic in cls.IC_CODE_MAP:
            return f"{family} ({cls.IC_CODE_MAP[ic][0]})"
    return f"FeliCa (IC code {ic:02X})"


# ---- the udp device ----------------------------------------------------------------------------


class UdpReaderDevice(nfc.clf.udp.Device):  # type: ignore[misc]
    """nfcpy's udp driver tuned for the emulated rig.

    nfcpy waits a fixed 1 s for a polling answer; a card emulator on this machine answers in about
    a millisecond, so polls wait `sense_timeout` instead. The socket is connected to the card's
    port, so when nothing listens there (the emulator is gone: the rig's reader is unplugged) the
    kernel says so and the adapter sees an OSError, as with a USB reader pulled out.
    """

    sense_timeout = 0.015
    socket: Any

    def __init__(self, host: str, port: int) -> None:
        self._sensing = False
        super().__init__(host, port)
        self._vendor_name, self._device_name, self._chipset_name = "nfcpy", "udp reader", "UDP"
        self._path = f"udp:{host}:{port}"
        self._probe()

    def _create_socket(self) -> None:
        if self.socket is None:
            super()._create_socket()
            sock: Any = self.socket
            sock.connect(self.addr)

    def _probe(self) -> None:
        """Raise OSError(ENODEV) unless something listens at the card's end."""
        self._create_socket()
        try:
            self.socket.send(b"PROBE 00")  # a bit rate no card answers to
            if select.select([self.socket], [], [], 0.05)[0]:
                self.socket.recv(1024)
        except OSError as exc:
            self.close()
            raise OSError(
                errno.ENODEV, f"nothing listens at {self._path} ({exc.strerror})"
            ) from None

    def sense_ttf(self, target: Any) -> Any:
        self._sensing = True
        try:
            return super().sense_ttf(target)
        finally:
            self._sensing = False

    def _recv_data(self, timeout: float | None, *brty_list: str) -> Any:
        if self._sensing and timeout is not None:
            timeout = min(timeout, self.sense_timeout)
        return super()._recv_data(timeout, *brty_list)


def open_frontend(path: str) -> Any:
    """An open nfcpy ContactlessFrontend on `path`; raises OSError naming the path if none."""
    check_path(path)
    clf = nfc.ContactlessFrontend()
    if path.startswith("udp:"):
        _, host, port = path.split(":")
        clf.device = UdpReaderDevice(host, int(port))
        return clf
    if not clf.open(path):
        raise OSError(errno.ENODEV, f"no reader found at {path}")
    return clf


def poll(clf: Any) -> Card | None:
    """One FeliCa poll at 212 and 424 kbps; the card that answered, or None."""
    targets = [nfc.clf.RemoteTarget(b) for b in BITRATES]
    target = clf.sense(*targets, iterations=1)
    res = None if target is None else target.sensf_res
    if res is None or len(res) < 17:
        return None
    system = int.from_bytes(res[17:19], "big") if len(res) >= 19 else None
    return Card(bytes(res[1:9]), bytes(res[9:17]), system, target.brty, target)


class CardGone(Exception):
    """The card stopped answering before the authentication was done."""


def authenticate(clf: Any, card: Card, master_key: bytes) -> bool:
    """FeliCa Lite-S mutual authentication with the card's own key (nfcpy `authenticate`).

    False when the card is not Lite-S or answers wrongly (a clone); CardGone when it stopped
    answering, so a card brushed past the reader is tried again rather than called a clone.
    """
    if not card.lite_s:
        return False
    tag = tt3_sony.FelicaLiteS(clf, card.target)
    try:
        return bool(tag.authenticate(lite_s_card_key(master_key, card.idm)))
    except nfc.tag.TagCommandError as exc:
        if exc.errno == nfc.tag.TIMEOUT_ERROR:
            raise CardGone(str(exc)) from None
        log.info("card authentication refused by the card (%s)", exc)
        return False
    except (TypeError, IndexError, ValueError, RuntimeError) as exc:
        log.info("card authentication failed: malformed answer (%s)", exc)  # X-SEC-3
        return False


def _reason(exc: Exception) -> str:
    """What a technician reads in the log line."""
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return f"{type(exc).__name__}: {exc}"


# ---- the adapter --------------------------------------------------------------------------------


class NfcReader:
    """The Reader port on an nfcpy device: `start(post)` polls in a thread, `stop()` ends it."""

    def __init__(
        self,
        path: str,
        master_key: bytes | None = None,
        *,
        poll_interval: float = 0.02,
        presence_interval: float = 0.05,
        release_after: float = 0.1,
        reopen_interval: float = 1.0,
        opener: Callable[[str], Any] = open_frontend,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_path(path)
        self.path = path
        self.master_key = master_key or None
        self.poll_interval = poll_interval  # between polls while the field is empty
        self.presence_interval = presence_interval  # between polls while a card is held
        self.release_after = release_after  # a card unseen this long has been taken away
        self.reopen_interval = reopen_interval
        self._opener = opener
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._post: Post | None = None
        self._present: bytes | None = None
        self._last_seen = 0.0
        self._misses = 0
        self._attempting: bytes | None = None
        self._attempts = 0
        self.polls = 0  # how many polls so far (tests and the benchmark read it)
        self.opened = 0  # how many times the device was opened
        self.connected = threading.Event()  # set while the device is open

    @property
    def card_present(self) -> bytes | None:
        """The IDm of the card on the reader now, as far as the last polls tell."""
        return self._present

    def start(self, post: Post) -> None:
        assert self._thread is None, "already started"
        self._post = post
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"reader {self.path}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.warning("reader %s: the polling thread did not stop in time", self.path)
            self._thread = None
        self._post = None

    def status_fields(self) -> dict[str, Any]:
        return {"reader": {"url": self.path, "open": self.connected.is_set()}}

    # ---- the polling thread -----------------------------------------------------------------

    def _run(self) -> None:
        away = False  # said once per outage, not at every retry
        while not self._stop.is_set():
            try:
                clf = self._opener(self.path)
            except Exception as exc:  # OSError when it is not there; anything else all the same
                if not away:
                    log.warning(
                        "reader %s: not available (%s); retrying every %g s",
                        self.path,
                        _reason(exc),
                        self.reopen_interval,
                    )
                    away = True
                self._stop.wait(self.reopen_interval)
                continue
            self.opened += 1
            log.info("reader %s: opened%s (%s)", self.path, " again" if away else "", clf.device)
            away = False
            self.connected.set()
            try:
                self._serve(clf)
            except OSError as exc:
                log.warning("reader %s: lost (%s); reopening", self.path, _reason(exc))
                away = True
            except Exception:
                log.exception("reader %s: unexpected error; reopening", self.path)
                away = True
                self._stop.wait(self.reopen_interval)
            finally:
                self.connected.clear()
                clf.close()

    def _serve(self, clf: Any) -> None:
        while not self._stop.is_set():
            card = poll(clf)
            self.polls += 1
            now = self._clock()
            if card is None:
                self._missed(now)
                self._stop.wait(self.poll_interval)
                continue
            self._last_seen, self._misses = now, 0
            if card.idm != self._present:
                self._tapped(clf, card)
            self._stop.wait(self.presence_interval)

    def _missed(self, now: float) -> None:
        if self._present is None:
            return
        self._misses += 1
        if self._misses >= 2 and now - self._last_seen >= self.release_after:
            log.info("reader %s: card taken away", self.path)
            self._present = None

    def _tapped(self, clf: Any, card: Card) -> None:
        authenticated = False
        note = ""
        if self.master_key is not None and card.lite_s:
            if card.idm != self._attempting:
                self._attempting, self._attempts = card.idm, 0
            self._attempts += 1
            try:
                authenticated = authenticate(clf, card, self.master_key)
            except CardGone as exc:
                if self._attempts < AUTH_ATTEMPTS:
                    log.info("reader %s: card left during authentication (%s)", self.path, exc)
                    return  # not a tap yet: the next poll tries again
            note = ", mutual authentication " + ("ok" if authenticated else "FAILED")
        elif card.lite_s:
            note = ", not authenticated: no card master key"
        self._present = card.idm
        self._attempting, self._attempts = None, 0
        log.info("reader %s: card tapped (%s, %s%s)", self.path, card.kind, card.bitrate, note)
        post = self._post
        if post is not None:
            post(CardTapped(card.idm, authenticated=authenticated))

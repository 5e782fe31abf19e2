"""The nfcpy reader adapter against an emulated card over nfcpy's `udp` driver.

Real nfcpy on both ends, real UDP sockets on loopback: the adapter (firmware.reader_nfc) polls,
the emulator (tools.card_emulator) answers as a FeliCa card would and records what it was asked.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from firmware.config import ConfigError
from firmware.inputs import CardTapped, Input
from firmware.reader_nfc import NfcReader, card_kind
from firmware.unit import make_reader
from protocol.cards import lite_s_card_key
from tools.card_emulator import CardEmulator, EmulatedCard

MASTER = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
ALICE = bytes.fromhex("0101010101010101")
BOB = bytes.fromhex("0202020202020202")
STRONG = bytes.fromhex("0303030303030303")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {predicate}")
        time.sleep(0.002)


class Taps:
    """What the adapter posted, as the runner's queue would receive it."""

    def __init__(self) -> None:
        self.events: list[Input] = []
        self.lock = threading.Lock()

    def __call__(self, event: Input) -> None:
        with self.lock:
            self.events.append(event)

    @property
    def taps(self) -> list[CardTapped]:
        return [e for e in self.events if isinstance(e, CardTapped)]

    def wait(self, count: int, timeout: float = 3.0) -> list[CardTapped]:
        wait_until(lambda: len(self.taps) >= count, timeout)
        return self.taps


class Rig:
    """One udp link: the card's end (emulator) and the reader adapter on it."""

    def __init__(self, master_key: bytes | None = MASTER, **tuning: Any) -> None:
        self.url = f"udp:127.0.0.1:{free_udp_port()}"
        self.emulator: CardEmulator | None = CardEmulator(self.url)
        self.posted = Taps()
        tuning.setdefault("reopen_interval", 0.05)
        self.reader = NfcReader(self.url, master_key, **tuning)
        self.reader.start(self.posted)
        assert self.reader.connected.wait(3), "the reader did not open"

    @property
    def card(self) -> CardEmulator:
        assert self.emulator is not None
        return self.emulator

    def present(self, card: EmulatedCard) -> None:
        self.card.present(card)

    def remove(self) -> None:
        """Take the card away and wait until the reader has noticed."""
        self.card.remove()
        wait_until(lambda: self.reader.card_present is None)

    def close(self) -> None:
        self.reader.stop()
        if self.emulator is not None:
            self.emulator.stop()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def test_a_card_held_on_the_reader_is_one_tap(rig: Rig):
    # SPEC U-FGT-2, U-END-2: a tap toggles things, so a held card must never count twice
    rig.present(EmulatedCard.plain(ALICE))
    assert rig.posted.wait(1) == [CardTapped(ALICE)]
    polls = rig.reader.polls
    wait_until(lambda: rig.reader.polls >= polls + 10)  # ten more polls find it still there
    assert rig.posted.taps == [CardTapped(ALICE)]


def test_a_card_held_for_a_minute_is_still_one_tap():
    # SPEC U-FGT-2: a minute of presence checks at the default cadence (60 s / 50 ms = 1200
    # polls), run without the pauses between them
    r = Rig(presence_interval=0.0)
    try:
        r.present(EmulatedCard.plain(ALICE))
        r.posted.wait(1)
        minute = int(60 / NfcReader("udp:127.0.0.1:1").presence_interval)
        start = r.reader.polls
        wait_until(lambda: r.reader.polls >= start + minute, timeout=30)
        assert r.posted.taps == [CardTapped(ALICE)]
        assert r.reader.card_present == ALICE
    finally:
        r.close()


def test_a_new_tap_needs_the_card_taken_away(rig: Rig):
    # SPEC U-FGT-2: the second tap of the forgotten-item window is a new presentation
    card = EmulatedCard.plain(ALICE)
    rig.present(card)
    rig.posted.wait(1)
    rig.remove()
    assert len(rig.posted.taps) == 1
    rig.present(card)
    assert rig.posted.wait(2) == [CardTapped(ALICE), CardTapped(ALICE)]


def test_two_cards_in_a_row_are_two_taps_also_when_one_replaces_the_other(rig: Rig):
    # SPEC U-START-3: each card is decided on its own
    rig.present(EmulatedCard.plain(ALICE))
    rig.posted.wait(1)
    rig.remove()
    rig.present(EmulatedCard.plain(BOB))
    rig.posted.wait(2)
    rig.present(EmulatedCard.plain(ALICE))  # swapped without an empty field in between
    assert rig.posted.wait(3) == [CardTapped(ALICE), CardTapped(BOB), CardTapped(ALICE)]


def test_a_card_answering_at_424_kbps_is_read_too():
    # SPEC U-CARD-2: FeliCa is polled at 212 and 424 kbps
    r = Rig()
    try:
        assert r.emulator is not None
        r.emulator.stop()
        r.emulator = CardEmulator(r.url, bitrate="424F")
        r.present(EmulatedCard.plain(BOB))
        assert r.posted.wait(1, timeout=5) == [CardTapped(BOB)]
    finally:
        r.close()


def test_nothing_but_the_polling_answer_is_read_from_a_plain_card(rig: Rig):
    # SPEC U-CARD-2: no personal data, no balance, no other blocks — even with a master key set
    card = EmulatedCard.plain(ALICE)
    rig.present(card)
    rig.posted.wait(1)
    rig.remove()
    assert card.commands, "the emulator recorded nothing: it would not see a read either"
    assert set(card.commands) == {"polling"}
    assert card.blocks_read == [] and card.blocks_written == []


def test_a_strong_card_passes_the_mutual_authentication(rig: Rig):
    # anti-cloning: a FeliCa Lite-S card with its own key derived from the master key
    card = EmulatedCard.strong(STRONG, MASTER)
    rig.present(card)
    assert rig.posted.wait(1) == [CardTapped(STRONG, authenticated=True)]
    assert card.card_key == lite_s_card_key(MASTER, STRONG)
    assert 0x92 in card.blocks_written  # the reader proved its key to the card (ext auth)


def test_a_copy_of_a_strong_cards_idm_is_reported_unauthenticated(rig: Rig):
    # anti-cloning: the IDm alone is public; a copy answers as plain FeliCa or with a wrong key
    plain_copy = EmulatedCard.plain(STRONG)
    rig.present(plain_copy)
    rig.posted.wait(1)
    rig.remove()
    wrong_key = EmulatedCard.lite_s(STRONG, lite_s_card_key(bytes(16), STRONG))
    rig.present(wrong_key)
    rig.posted.wait(2)
    rig.remove()
    blank = EmulatedCard.lite_s(STRONG)  # a blank Lite-S card with the IDm written in
    rig.present(blank)
    assert rig.posted.wait(3) == [CardTapped(STRONG, authenticated=False)] * 3
    assert plain_copy.blocks_read == []  # a plain card is still not read


def test_without_a_master_key_no_card_is_authenticated_or_read():
    # SPEC U-CARD-2: a unit without strong cards talks to a Lite-S card like to any other
    r = Rig(master_key=None)
    try:
        card = EmulatedCard.strong(STRONG, MASTER)
        r.present(card)
        assert r.posted.wait(1) == [CardTapped(STRONG, authenticated=False)]
        assert card.blocks_read == []
    finally:
        r.close()


def test_the_reader_gone_and_back_is_logged_and_reopened(caplog: pytest.LogCaptureFixture):
    # SPEC X-SEC-3: the unit keeps running; a technician sees what happened in the log
    caplog.set_level(logging.INFO, logger="firmware.reader_nfc")
    r = Rig()
    try:
        r.present(EmulatedCard.plain(ALICE))
        r.posted.wait(1)
        opened = r.reader.opened
        r.card.stop()  # the emulated reader disappears (a USB reader pulled out)
        r.emulator = None
        wait_until(lambda: not r.reader.connected.is_set())
        r.emulator = CardEmulator(r.url)  # plugged back in
        wait_until(lambda: r.reader.opened == opened + 1)
        r.present(EmulatedCard.plain(BOB))
        assert r.posted.wait(2) == [CardTapped(ALICE), CardTapped(BOB)]
    finally:
        r.close()
    messages = [rec.getMessage() for rec in caplog.records]
    assert any("lost" in m and "reopening" in m for m in messages), messages
    assert any("opened again" in m for m in messages), messages


def test_a_reader_missing_at_start_is_retried_until_it_appears(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="firmware.reader_nfc")
    url = f"udp:127.0.0.1:{free_udp_port()}"
    posted = Taps()
    reader = NfcReader(url, reopen_interval=0.02)
    reader.start(posted)
    emulator = None
    try:
        wait_until(lambda: any("not available" in r.getMessage() for r in caplog.records))
        time.sleep(0.1)  # several retries: said once, not at every one
        assert sum("not available" in r.getMessage() for r in caplog.records) == 1
        emulator = CardEmulator(url)
        emulator.present(EmulatedCard.plain(ALICE))
        assert posted.wait(1, timeout=3) == [CardTapped(ALICE)]
    finally:
        reader.stop()
        if emulator is not None:
            emulator.stop()


def test_stop_ends_the_polling_thread_at_once(rig: Rig):
    rig.present(EmulatedCard.plain(ALICE))
    rig.posted.wait(1)
    started = time.monotonic()
    rig.reader.stop()
    assert time.monotonic() - started < 0.5
    assert not any(t.name.startswith("reader udp") for t in threading.enumerate())


def test_the_unit_builds_the_nfc_reader_from_an_nfcpy_device_path():
    for url in ("udp:localhost:50000", "usb:054c:06c1", "usb", "tty:USB0:pn532"):
        assert isinstance(make_reader(url, MASTER), NfcReader)
    for bad in ("udp:localhost", "udp:localhost:notaport", "tty:USB0", "bluetooth:1"):
        with pytest.raises(ConfigError, match=r"unit\.reader"):
            make_reader(bad)


def test_card_kinds_are_named_from_the_pmm():
    assert card_kind(bytes.fromhex("00F1FFFFFFFFFFFF")) == "FeliCa Lite-S (RC-S966)"
    assert card_kind(bytes.fromhex("03014B024F4993FF")) == "FeliCa Standard (RC-S915)"
    assert card_kind(bytes.fromhex("0099000000000000")) == "FeliCa (IC code 99)"


def test_a_reader_that_fails_oddly_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture):
    # SPEC X-SEC-3: whatever the driver throws, the unit keeps its reader thread alive
    from firmware.reader_nfc import open_frontend

    caplog.set_level(logging.INFO, logger="firmware.reader_nfc")
    url = f"udp:127.0.0.1:{free_udp_port()}"
    emulator = CardEmulator(url)
    calls: list[str] = []

    def opener(path: str) -> Any:
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("driver confused")
        return open_frontend(path)

    posted = Taps()
    reader = NfcReader(url, reopen_interval=0.02, opener=opener)
    reader.start(posted)
    try:
        emulator.present(EmulatedCard.plain(ALICE))
        assert posted.wait(1) == [CardTapped(ALICE)]
    finally:
        reader.stop()
        emulator.stop()
    assert any(
        "not available (RuntimeError: driver confused)" in r.getMessage() for r in caplog.records
    )

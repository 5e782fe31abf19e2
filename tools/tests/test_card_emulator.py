"""The emulated card itself: its Lite-S cryptography agrees with nfcpy's reader side, it refuses
what a real Lite-S card refuses, and it lets go of its port when stopped."""

from __future__ import annotations

import os
import socket
import time

import pytest
from nfc.tag.tt3_sony import FelicaLite

from firmware.tests.test_reader_nfc import MASTER, free_udp_port
from protocol.cards import lite_s_card_key
from tools.card_emulator import CK, MAC_A, RC, STATE, CardEmulator, EmulatedCard, lite_s_mac

IDM = bytes.fromhex("0123456789abcdef")


def test_the_cards_mac_is_the_one_nfcpy_computes_on_the_reader_side():
    for length in (16, 24, 32, 48):
        data, key, iv = os.urandom(length), os.urandom(16), os.urandom(8)
        assert lite_s_mac(data, key, iv) == bytes(FelicaLite.generate_mac(data, key, iv))


def test_a_write_with_a_wrong_mac_changes_nothing():
    # what a reader without the card key gets: the state block stays "not authenticated"
    card = EmulatedCard.strong(IDM, MASTER)
    assert card.write_block(RC, os.urandom(16), True, True)
    assert card.write_block(STATE, b"\x01" + bytes(15), True, False)
    assert not card.write_block(MAC_A, os.urandom(8) + bytes(8), False, True)
    assert card.memory[STATE][0] == 0


def test_a_provisioned_card_keeps_its_key_and_never_shows_it():
    card = EmulatedCard.strong(IDM, MASTER)
    assert not card.write_block(CK, bytes(16), True, True)  # system blocks locked
    assert card.card_key == lite_s_card_key(MASTER, IDM)
    assert card.read_block(CK, True, True) is None


def test_a_card_needs_an_8_byte_idm_and_pmm():
    with pytest.raises(ValueError, match="8-byte IDm"):
        EmulatedCard(IDM[:7])


def test_stopping_frees_the_port_at_once_whatever_the_reader_was_doing():
    url = f"udp:127.0.0.1:{free_udp_port()}"
    emulator = CardEmulator(url)
    emulator.present(EmulatedCard.plain(IDM))
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 0.5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))  # free again
    with pytest.raises(ValueError, match="udp:HOST:PORT"):
        CardEmulator("usb:054c:06c1")

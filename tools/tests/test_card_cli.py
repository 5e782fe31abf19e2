"""`kagi card read | emulate | provision` against emulated cards over nfcpy's udp driver."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.inputs import CardTapped
from firmware.reader_nfc import NfcReader
from firmware.tests.test_reader_nfc import MASTER, Taps, free_udp_port, wait_until
from protocol.cards import card_hash, lite_s_card_key
from tools.card_emulator import MC, CardEmulator, EmulatedCard
from tools.cli import main

FLEET = bytes.fromhex("00112233445566778899aabbccddeeff")
IDM = bytes.fromhex("0123456789abcdef")


@pytest.fixture
def emulator() -> Iterator[CardEmulator]:
    em = CardEmulator(f"udp:127.0.0.1:{free_udp_port()}")
    yield em
    em.stop()


def kagi(*args: str) -> int:
    return main(list(args))


def kagi_process(*args: str) -> subprocess.Popen[str]:
    script = Path(sys.executable).with_name("kagi")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]
    return subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def fields(text: str) -> dict[str, str]:
    return {
        k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if line)
    }


# ---- read ---------------------------------------------------------------------------------------


def test_read_prints_the_type_idm_pmm_and_keyed_hash_and_reads_no_block(emulator, capsys):
    # SPEC U-CARD-2: for the counter where cards are registered; nothing else is read
    card = EmulatedCard.plain(IDM)
    emulator.present(card)
    assert kagi("card", "read", "--device", emulator.url, "--fleet-key", FLEET.hex()) == 0
    out = fields(capsys.readouterr().out)
    assert out["type"] == "FeliCa Standard (RC-S915)"
    assert out["IDm"] == "0123456789ABCDEF"
    assert out["PMm"] == "03014B024F4993FF"
    assert out["keyed hash"] == card_hash(FLEET, IDM)
    assert out["strong"].startswith("no")
    assert set(card.commands) == {"polling"} and card.blocks_read == []


def test_read_takes_the_keys_from_a_unit_config_and_checks_a_strong_card(
    emulator, capsys, tmp_path
):
    config = tmp_path / "unit.toml"
    config.write_text(
        f'[unit]\ncar_id = "c1"\ncard_key = "{FLEET.hex()}"\ncard_master_key = "{MASTER.hex()}"\n',
        encoding="utf-8",
    )
    emulator.present(EmulatedCard.strong(IDM, MASTER))
    assert kagi("card", "read", "--device", emulator.url, "--config", str(config), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["type"] == "FeliCa Lite-S (RC-S966)"
    assert info["card_hash"] == card_hash(FLEET, IDM)
    assert info["authenticated"] is True


def test_read_names_what_is_missing(emulator, capsys):
    # bad input gets a clear error naming what was wrong
    gone = f"udp:127.0.0.1:{free_udp_port()}"
    assert kagi("card", "read", "--device", gone, "--fleet-key", FLEET.hex()) == 2
    assert f"reader {gone}: nothing listens" in capsys.readouterr().err
    assert (
        kagi("card", "read", "--device", emulator.url, "--wait", "0.1", "--fleet-key", FLEET.hex())
        == 2
    )
    assert "no card within 0.1 s" in capsys.readouterr().err
    assert kagi("card", "read", "--device", emulator.url) == 2
    assert "no fleet key" in capsys.readouterr().err
    assert kagi("card", "read", "--device", "bluetooth:1", "--fleet-key", FLEET.hex()) == 2
    assert "expected usb" in capsys.readouterr().err


# ---- provision ----------------------------------------------------------------------------------


def test_provision_writes_the_card_key_and_the_card_authenticates_afterwards(emulator, capsys):
    # anti-cloning: the card gets its own key, derived from the master key and its IDm
    card = EmulatedCard.lite_s(IDM)  # blank, factory key
    emulator.present(card)
    args = ["--device", emulator.url, "--fleet-key", FLEET.hex(), "--master-key", MASTER.hex()]
    assert kagi("card", "provision", *args) == 0
    captured = capsys.readouterr()
    assert fields(captured.out)["keyed hash"] == card_hash(FLEET, IDM)
    assert fields(captured.out)["strong"] == "yes"
    assert "register the keyed hash as a strong card" in captured.err
    assert card.card_key == lite_s_card_key(MASTER, IDM)
    assert card.memory[MC][2] == 0x00  # system blocks locked: the key cannot be overwritten
    assert kagi("card", "provision", *args, "--json") == 0
    assert json.loads(capsys.readouterr().out)["provisioned"].startswith("already provisioned")

    emulator.remove()  # a fresh tap on a unit's reader
    posted = Taps()
    reader = NfcReader(emulator.url, MASTER, reopen_interval=0.05)
    reader.start(posted)
    try:
        emulator.present(card)
        assert posted.wait(1) == [CardTapped(IDM, authenticated=True)]
    finally:
        reader.stop()


def test_provision_refuses_a_plain_card_and_a_card_locked_by_another_key(emulator, capsys):
    args = ["--device", emulator.url, "--fleet-key", FLEET.hex(), "--master-key", MASTER.hex()]
    emulator.present(EmulatedCard.plain(IDM))
    assert kagi("card", "provision", *args) == 2
    assert "only FeliCa Lite-S cards hold a card key" in capsys.readouterr().err
    other = EmulatedCard.strong(IDM, bytes(range(100, 116)))
    emulator.present(other)
    assert kagi("card", "provision", *args) == 2
    assert "locked with another key" in capsys.readouterr().err
    assert other.card_key == lite_s_card_key(bytes(range(100, 116)), IDM)  # left as it was
    assert kagi("card", "provision", "--device", emulator.url, "--fleet-key", FLEET.hex()) == 2
    assert "no card master key" in capsys.readouterr().err


# ---- emulate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_emulate_runs_until_stopped_and_exits_cleanly_mid_conversation(stop, tmp_path):
    url = f"udp:127.0.0.1:{free_udp_port()}"
    record = tmp_path / "record.json"
    proc = kagi_process(
        "card", "emulate", "--device", url, "--idm", IDM.hex(), "--master-key", MASTER.hex(),
        "--record", str(record),
    )  # fmt: skip
    posted = Taps()
    reader = NfcReader(url, MASTER, presence_interval=0.0, reopen_interval=0.05)
    try:
        reader.start(posted)
        assert posted.wait(1, timeout=10) == [CardTapped(IDM, authenticated=True)]
        proc.send_signal(stop)  # while the reader keeps polling it as fast as it can
        assert proc.wait(timeout=5) == 0
    finally:
        reader.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate()
    assert "presenting FeliCa Lite-S IDm 0123456789ABCDEF" in err
    assert "card removed" in err
    asked = json.loads(record.read_text(encoding="utf-8"))
    assert "read_without_encryption" in asked["commands"]  # the authentication, recorded


def test_emulate_presents_for_the_time_given_and_refuses_bad_options(tmp_path):
    url = f"udp:127.0.0.1:{free_udp_port()}"
    record = tmp_path / "record.json"
    started = time.monotonic()
    proc = kagi_process(
        "card", "emulate", "--device", url, "--idm", IDM.hex(), "--seconds", "0.3",
        "--record", str(record),
    )  # fmt: skip
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started >= 0.3
    assert json.loads(record.read_text(encoding="utf-8"))["blocks_read"] == []
    bad = kagi_process("card", "emulate", "--device", url, "--idm", "xyz")
    assert bad.wait(timeout=10) == 2
    assert "IDm must be hex digits" in bad.communicate()[1]
    bad = kagi_process("card", "emulate", "--device", "udp:127.0.0.1", "--idm", IDM.hex())
    assert bad.wait(timeout=10) == 2
    assert "expected udp:HOST:PORT" in bad.communicate()[1]


def test_the_emulator_answers_nothing_once_the_card_is_taken_away(emulator):
    posted = Taps()
    reader = NfcReader(emulator.url, reopen_interval=0.05)
    reader.start(posted)
    try:
        card = EmulatedCard.plain(IDM)
        emulator.present(card)
        posted.wait(1)
        emulator.remove()
        wait_until(lambda: reader.card_present is None)
        asked = len(card.commands)
        polls = reader.polls
        wait_until(lambda: reader.polls >= polls + 5)
        assert len(card.commands) == asked
        assert posted.taps == [CardTapped(IDM)]
    finally:
        reader.stop()

"""A real `kagi unit run` with `reader = "udp:…"` and a real `kagi card emulate` process.

The driver's card, emulated in its own process, is tapped on the unit's nfcpy reader; the unit
decides from its bookings and unlocks. Seen through the unit's control socket, as the rig sees it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.tests.harness import ALICE, START, bookings
from firmware.tests.test_reader_nfc import free_udp_port
from firmware.tests.unit_process import CARD_KEY, CLOCK_START, UnitProcess, kagi_command


@pytest.fixture
def unit(tmp_path: Path) -> Iterator[tuple[UnitProcess, str]]:
    url = f"udp:127.0.0.1:{free_udp_port()}"
    (tmp_path / "unit.toml").write_text(
        "[unit]\n"
        'car_id = "car-reader"\n'
        f'card_key = "{CARD_KEY}"\n'
        'database = "unit.db"\n'
        f'reader = "{url}"\n'
        'board = "sim:"\n'
        'cloud = "none:"\n'
        'clock = "manual"\n'
        f"clock_start = {CLOCK_START}\n"
        'control = "control.sock"\n',
        encoding="utf-8",
    )
    process = UnitProcess(tmp_path)
    yield process, url
    process.close()


def test_a_tap_of_the_reserving_drivers_card_on_the_nfc_reader_unlocks_the_car(unit):
    # SPEC U-START-2, U-START-4: card → nfcpy reader → trip core → doors, across real processes
    process, url = unit
    process.start()
    assert process.request({"op": "bookings", "bookings": bookings().to_dict()})["ok"]
    assert process.request({"op": "set_time", "t": START})["ok"]
    assert process.status()["state"] == "idle"
    card = subprocess.Popen(
        [*kagi_command(), "card", "emulate", "--device", url, "--idm", ALICE.hex()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while (status := process.status())["state"] != "unlocked":
            assert time.monotonic() < deadline, process.log_tail()
            time.sleep(0.02)
        assert status["car"]["doors"] == "unlocked"
        assert status["car"]["hazard_blinks"] == 2
        card.send_signal(signal.SIGTERM)
        assert card.wait(timeout=5) == 0
    finally:
        if card.poll() is None:
            card.kill()
        card.communicate()
    assert process.status()["state"] == "unlocked"  # the card went away: nothing more happened
    log = process.log_path.read_text(encoding="utf-8")
    assert f"reader {url}: opened" in log
    assert "card tapped (FeliCa Standard" in log
    assert ALICE.hex() not in log.lower()  # the IDm is not written anywhere in the clear

"""A real `kagi unit run` with `board = "<pty>"` in its config, wired to the real board firmware
(MicroPython on the simulated rig): a tap on the unit's control socket opens the car's doors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boards.sim.rig import SimBoard
from firmware.tests.harness import ALICE, START, bookings
from firmware.tests.unit_process import UnitProcess, write_config


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[SimBoard, UnitProcess]]:
    with SimBoard(tmp_path / "board", "pico", {"heartbeat_timeout_ms": 1500}) as sim:
        folder = tmp_path / "unit"
        config = write_config(folder, car_id="car-board")
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace('board = "sim:"', f'board = "{sim.host_port}"'))
        unit = UnitProcess(folder)
        try:
            yield sim, unit
        finally:
            unit.close()


def wait_status(unit: UnitProcess, check: Any, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = unit.status()
        if check(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"status never got there: {status}\n{unit.log_tail()}")
        time.sleep(0.05)


def test_a_tap_on_the_unit_unlocks_the_boards_relays(rig):
    # SPEC U-START-4 end to end: tap → the unit decides → the board pulses the unlock relay,
    # blinks the hazard lamps twice and plays "start OK"
    sim, unit = rig
    unit.start()
    status = wait_status(unit, lambda s: s["board"]["up"])
    assert status["board"]["board"]["pinmap"] == "pico-r1"
    # the link came up: the idle car's outputs went out (doors locked, engine immobilised)
    sim.wait_for(lambda: sim.pulses("lock") == 1, 2, "the lock re-applied on link up")
    assert sim.output("immobiliser") and sim.pulses("unlock") == 0
    assert unit.request({"op": "bookings", "bookings": bookings().to_dict()})["ok"]
    assert unit.request({"op": "set_time", "t": START})["ok"]
    answer = unit.request({"op": "tap", "idm": ALICE.hex()})
    assert answer["ok"] and {"effect": "Unlock"} in answer["effects"]
    sim.wait_for(lambda: sim.pulses("unlock") == 1, 1, "the unlock relay")
    sim.wait_for(lambda: sim.pulses("hazard") == 2, 2, "two hazard blinks")
    assert sim.voice_clips() == [1]  # start_ok
    sim.set_input("door_driver", True)  # the driver opens the door
    status = wait_status(unit, lambda s: s["sensors"]["doors"]["driver"])
    assert status["state"] == "unlocked"
    assert "board link up (connected): pico firmware 0.1.0" in unit.log_tail(200)

"""`kagi unit monitor` watching a real `kagi unit run` wired to the real board firmware on the
simulated rig, while a trip is driven through it: what the technician reads is what happened
(issue 8)."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boards.sim.rig import SimBoard
from firmware.tests.harness import ALICE, START, bookings
from firmware.tests.unit_process import UnitProcess, kagi_command, write_config
from tools import monitor
from tools.cli import main


@pytest.fixture
def car(tmp_path: Path) -> Iterator[tuple[SimBoard, UnitProcess]]:
    with SimBoard(tmp_path / "board", "pico") as sim:
        folder = tmp_path / "unit"
        config = write_config(folder, car_id="car-mon")
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace('board = "sim:"', f'board = "{sim.host_port}"'))
        unit = UnitProcess(folder)
        try:
            unit.start()
            deadline = time.monotonic() + 5
            while not unit.status().get("board", {}).get("up"):
                assert time.monotonic() < deadline, unit.log_tail()
                time.sleep(0.05)
            assert unit.request({"op": "bookings", "bookings": bookings().to_dict()})["ok"]
            assert unit.request({"op": "set_time", "t": START})["ok"]
            yield sim, unit
        finally:
            unit.close()


class Watching:
    """`kagi unit monitor` as a process, its lines read as they come."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [*kagi_command(), "unit", "monitor", "--config", str(config), "--interval", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, text: str, timeout: float = 5.0) -> str:
        """The next line holding `text` (lines before it are kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"the monitor never showed {text!r}; it showed:\n" + "\n".join(self.seen)
                ) from None
            self.seen.append(line)
            if text in line:
                return line

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_the_monitor_shows_a_trip_as_it_happens(car):
    # SPEC U-START-4, U-SEC-1, U-SEC-5, U-END-3, U-FGT-1: the states, timers, inputs, outputs and
    # events of a whole trip, as a technician on the phone with the driver would read them
    sim, unit = car
    watching = Watching(unit.config)
    try:
        # the first view: an idle car, its board up
        watching.expect("car car-mon · unit clock 2026-11-23 10:00:00 (Asia/Tokyo)")
        assert watching.expect("state    ") == "state    idle"
        watching.expect("inputs   doors closed · key in the box at return · engine off · brake on")
        watching.expect("outputs  doors locked · immobiliser ON · reader LED green_blink")
        board = watching.expect("board    ")
        assert board.startswith("board    up · pico firmware 0.1.0 pin map pico-r1 build -")
        watching.expect("cloud    none (unit.cloud = none:): events stay in the outbox")
        # the driver taps
        assert unit.request({"op": "tap", "idm": ALICE.hex()})["ok"]
        watching.expect("10:00:00 state idle → unlocked")
        watching.expect("10:00:00 doors unlocked")
        watching.expect("10:00:00 timer door set: 1:00")
        watching.expect("10:00:00 timer key set: 10:00")
        # the board link's event came first (#1, when the unit started)
        watching.expect("event #2 10:00:00 trip_started reservation_id=r1 by=card to=unlocked")
        # on the car: the driver's door opens, the key comes out turned to lend, the engine runs
        unit.request({"op": "advance", "seconds": 20})
        sim.set_input("door_driver", True)
        watching.expect("10:00:20 door driver opened")
        watching.expect("10:00:20 timer door over")
        sim.set_inputs(key_lend=True)
        sim.set_input("key_present", False)
        watching.expect("state unlocked → in_use")
        watching.expect("key taken")
        watching.expect("immobiliser off")
        sim.set_input("door_driver", False)
        sim.set_input("engine", True)
        watching.expect("engine started")
        # the board's cable comes loose and back
        sim.cable(False)
        watching.expect("board link DOWN", timeout=10)
        sim.cable(True)
        watching.expect("board link up", timeout=10)
        # back at the station: engine off, key home at return, brake on, doors closed; tap
        sim.set_input("engine", False)
        watching.expect("engine stopped")
        sim.set_inputs(key_present=True, key_lend=False)
        watching.expect("state in_use → returning")
        watching.expect("key in the box at return")
        watching.expect("reader LED orange_blink")
        watching.expect("timer return_key set: 10:00")
        assert unit.request({"op": "advance", "seconds": 300})["ok"]
        answer = unit.request({"op": "tap", "idm": ALICE.hex()})
        assert answer["ok"], answer
        watching.expect("10:05:20 state returning → forgotten_item_window")
        watching.expect("10:05:20 doors locked")
        watching.expect("10:05:20 immobiliser on")
        watching.expect("10:05:20 timer forgotten set: 10:00")
        watching.expect("trip_ended reservation_id=r1 by=card to=forgotten_item_window")
    finally:
        watching.close()


def test_once_shows_the_timers_counting_down(car, capsys):
    # SPEC U-SEC-1, U-SEC-2: the door and key timers, as they run on the unit's clock
    _sim, unit = car
    assert unit.request({"op": "tap", "idm": ALICE.hex()})["ok"]
    assert unit.request({"op": "advance", "seconds": 15})["ok"]
    assert main(["unit", "monitor", "--config", str(unit.config), "--once"]) == 0
    view = capsys.readouterr().out.splitlines()
    assert view[1] == "state    unlocked"
    assert view[2] == "trip     r1 · driver XXY00001001 · started by card · ends 12:00:00 (1:59:45)"
    assert view[3].startswith("timers   door 0:45 · key_warning 8:45 · key 9:45 · ")
    assert view[5] == "outputs  doors unlocked · immobiliser ON · reader LED dark"
    assert view[-2].startswith("events   #1 ") and "board_link reason=connected" in view[-2]
    assert view[-1].startswith("         #2 10:00:00 trip_started reservation_id=r1 by=card")
    assert view[-1].endswith("(not sent yet)")
    assert unit.request({"op": "advance", "seconds": 30})["ok"]
    assert main(["unit", "monitor", "--config", str(unit.config), "--once"]) == 0
    assert "timers   door 0:15 · key_warning 8:15 · key 9:15" in capsys.readouterr().out


def test_no_unit_is_one_line_and_the_config_comes_from_the_environment(
    tmp_path, monkeypatch, capsys
):
    config = write_config(tmp_path / "unit", car_id="car-none")
    monkeypatch.setenv("KAGI_UNIT_CONFIG", str(config))
    assert main(["unit", "monitor", "--once"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"kagi unit monitor: no unit answers on {tmp_path / 'unit' / 'control.sock'}"
    )
    assert err.endswith("is `kagi unit run` running?\n") and err.count("\n") == 1
    monkeypatch.delenv("KAGI_UNIT_CONFIG")
    assert main(["unit", "monitor", "--once"]) == 2
    assert "--config (or KAGI_UNIT_CONFIG) or --control is needed" in capsys.readouterr().err


def test_the_broker_link_as_the_unit_reports_it():
    # S-SYNC-4: what the MQTT link says of itself, in the unit's status
    status: dict[str, Any] = {
        "car_id": "car-1",
        "now": START,
        "state": "idle",
        "cloud": {
            "url": "mqtts://car-1:***@broker:8883",
            "connected": False,
            "caught_up": False,
            "in_flight": 2,
            "last_error": "connection refused",
            "counts": {"published": 5, "acked": 3},
        },
    }
    lines = monitor.render(status, [], "Asia/Tokyo", "mqtts://car-1:pw@broker:8883")
    assert (
        "cloud    DISCONNECTED · mqtts://car-1:***@broker:8883 · in flight 2 · "
        "last error connection refused · counts published=5 acked=3"
    ) in lines
    assert not any("pw" in line for line in lines)  # the password is never shown
    later = {**status, "cloud": {**status["cloud"], "connected": True}}
    assert monitor.changes(status, later, [], [], "Asia/Tokyo") == [
        "10:00:00 cloud connected · mqtts://car-1:***@broker:8883 · in flight 2 · "
        "last error connection refused · counts published=5 acked=3"
    ]

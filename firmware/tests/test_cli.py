"""`kagi unit run` and `kagi unit state` as a technician meets them: a real process, its control
socket, and one clear line for each thing that can be wrong (SPEC X-SEC-3, U-DATA-1)."""

from __future__ import annotations

import json
import subprocess

import pytest

from firmware.tests.unit_process import CARD_KEY, UnitProcess, kagi_command, write_config
from protocol.cards import card_hash

T0 = 1_900_000_000.0  # 2030: after the manual clock's start (the system time)
IDM = "0101010101010101"


def kagi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kagi_command(), *args], capture_output=True, text=True, timeout=30, check=False
    )


def snapshot() -> dict:
    card = card_hash(bytes.fromhex(CARD_KEY), bytes.fromhex(IDM))
    return {
        "version": 1,
        "reservations": [{"id": "r1", "driver_id": "d1", "start": T0 + 600, "end": T0 + 7800}],
        "drivers": [{"id": "d1", "licence_expiry": "2030-12-31", "cards": [card]}],
    }


@pytest.fixture
def unit(tmp_path):
    process = UnitProcess(tmp_path)
    process.start()
    yield process
    process.close()


@pytest.mark.slow
def test_a_unit_process_serves_a_tap_through_its_control_socket(unit):
    # SPEC U-START-4 through the real program
    assert unit.request({"op": "set_time", "t": T0})["ok"]
    assert unit.request({"op": "bookings", "bookings": snapshot()})["ok"]
    assert unit.request({"op": "advance", "seconds": 600})["ok"]
    reply = unit.request({"op": "tap", "idm": IDM})
    assert {"effect": "Hazard", "times": 2} in reply["effects"]
    assert {"effect": "Unlock"} in reply["effects"]
    status = unit.status()
    assert status["state"] == "unlocked"
    assert status["car"]["doors"] == "unlocked"
    assert status["outbox"]["last_seq"] == 1


@pytest.mark.slow
def test_bad_requests_get_a_clear_error_and_the_unit_keeps_running(unit):
    # SPEC X-SEC-3
    for bad, words in [
        (b"this is not json", "Expecting value"),
        (json.dumps({"op": "door", "door": "sunroof", "open": True}).encode(), "sunroof"),
        (json.dumps({"op": "tap", "idm": "12"}).encode(), "IDm must be 8 bytes"),
        (json.dumps({"op": "fly"}).encode(), "unknown op 'fly'"),
        (json.dumps({"op": "brake"}).encode(), "brake: missing 'on'"),
        (json.dumps({"op": "bookings", "bookings": {"drivers": [{"id": 1}]}}).encode(), "licence"),
    ]:
        unit._sock.sendall(bad + b"\n")
        reply = unit.reply()
        assert reply["ok"] is False
        assert words in reply["error"]
    assert unit.status()["state"] == "idle"


@pytest.mark.slow
def test_sigterm_stops_the_unit_cleanly(unit):
    unit.proc.terminate()
    assert unit.proc.wait(timeout=10) == 0
    unit.proc = None
    assert "ready" in unit.log_tail()


def test_a_bad_configuration_is_refused_with_the_key(tmp_path):
    # SPEC X-SEC-3
    config = write_config(tmp_path, extra='[timing]\ndoor_timer = "soon"\n')
    result = kagi("unit", "run", "--config", str(config))
    assert result.returncode == 2
    assert 'timing.door_timer: expected a duration such as "10m" or "60s", got \'soon\'' in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_corrupt_database_stops_the_unit_with_the_file_named(tmp_path):
    # SPEC U-DATA-1: reported clearly and never silently reset
    config = write_config(tmp_path)
    database = tmp_path / "unit.db"
    database.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)
    result = kagi("unit", "run", "--config", str(config))
    assert result.returncode == 2
    assert str(database) in result.stderr
    assert "left as it is" in result.stderr
    assert database.read_bytes() == b"SQLite format 3\x00" + b"\xff" * 8000


@pytest.mark.slow
def test_unit_state_prints_what_the_unit_saved(tmp_path):
    # SPEC U-DATA-1: readable by a technician after the fact
    process = UnitProcess(tmp_path)
    process.start()
    try:
        process.request({"op": "set_time", "t": T0 + 600})
        process.request({"op": "bookings", "bookings": snapshot()})
        process.request({"op": "tap", "idm": IDM})
    finally:
        process.kill()
    result = kagi("unit", "state", "--config", str(process.config))
    assert result.returncode == 0, result.stderr
    saved = json.loads(result.stdout)
    assert saved["trip_state"]["state"] == "unlocked"
    assert [e["type"] for e in saved["outbox"]] == ["trip_started"]
    assert saved["bookings"]["reservations"][0]["id"] == "r1"


def test_unit_state_without_a_database_says_so(tmp_path):
    config = write_config(tmp_path)
    result = kagi("unit", "state", "--config", str(config))
    assert result.returncode == 2
    assert "no database yet" in result.stderr
    assert not (tmp_path / "unit.db").exists()

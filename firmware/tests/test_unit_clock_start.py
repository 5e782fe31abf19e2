"""A manual clock starts at `unit.clock_start` (the HIL rig's car time) when the database holds no
time yet, and where the unit stopped after that (a power cut does not move it back)."""

from __future__ import annotations

from pathlib import Path

from firmware.tests.unit_process import UnitProcess, write_config

START = 1_800_000_000.0


def test_a_manual_clock_starts_at_clock_start_then_resumes_where_it_stopped(tmp_path: Path):
    write_config(tmp_path, clock_start=START)
    unit = UnitProcess(tmp_path)
    try:
        unit.start()
        assert unit.status()["now"] == START
        assert unit.request({"op": "advance", "seconds": 600})["ok"]
        unit.kill()
        unit.drop_connection()
        unit.start()
        assert unit.status()["now"] == START + 600
    finally:
        unit.close()

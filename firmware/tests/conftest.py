"""Fixtures shared by the unit's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.slots import Slots
from firmware.tests.probe_unit import wheel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Slots:
    """A car's install slots with version 0.1.0 of the probe wheel installed first; the probe
    writes each version that ran to `tmp_path/ran`."""
    monkeypatch.setenv("PROBE_OUT", str(tmp_path / "ran"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    slots = Slots(tmp_path / "unit")
    slots.first_install(wheel(tmp_path, "0.1.0"), "0.1.0")
    return slots

"""Fixtures of the board room: a simulated board (the real firmware under MicroPython, the rig
around it) and a bare host on the other end of its cable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from boards.common import link
from boards.sim.rig import RP2040_HEAP, SimBoard
from boards.tests import mpy
from boards.tests.host import RawHost

# quick enough for tests: the link is lost after 0.6 s of silence, the watchdog bites after 1 s
FAST = {"heartbeat_timeout_ms": 600, "watchdog_ms": 1000}


@pytest.fixture(autouse=True, params=[None, RP2040_HEAP], ids=["heap-default", "heap-96K"])
def heap(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Every board test twice: in the interpreter's default heap, and in the 96 kB an RP2040
    leaves free (a firmware that needs more would fail on the chip)."""
    mpy.HEAP = request.param
    yield request.param
    mpy.HEAP = None


@pytest.fixture
def sim(tmp_path: Path, heap: str | None) -> Iterator[SimBoard]:
    board = SimBoard(tmp_path / "board", "pico", FAST, heap=heap)
    board.start()
    yield board
    board.close()


@pytest.fixture
def host(sim: SimBoard) -> Iterator[RawHost]:
    raw = RawHost(sim.host_port)
    boot = raw.frame()  # the hello the board sends by itself at boot
    assert boot.kind == link.HELLO, boot
    yield raw
    raw.close()

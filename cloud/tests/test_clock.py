"""The cloud's clock: `--clock file:PATH` runs the whole cloud on the time the rig writes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cloud.clock import ClockError, FileClock, parse_clock, system_clock


def test_file_clock_reads_what_the_rig_writes(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    FileClock.write(path, 1_800_000_000)
    clock = parse_clock(f"file:{path}")
    assert clock() == dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)
    FileClock.write(path, 1_800_000_600.5)
    assert clock() == dt.datetime(2027, 1, 15, 8, 10, 0, 500000, tzinfo=dt.UTC)


def test_system_is_the_default() -> None:
    assert parse_clock("system") is system_clock


@pytest.mark.parametrize(
    ("text", "why"),
    [("manual", "expected 'system' or 'file:PATH'"), ("file:", "expected 'system'")],
)
def test_bad_clock_names_are_refused(text: str, why: str) -> None:
    with pytest.raises(ClockError, match=why):
        parse_clock(text)


def test_a_missing_or_garbled_file_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ClockError, match="No such file"):
        parse_clock(f"file:{tmp_path / 'nothing'}")
    (tmp_path / "bad").write_text("noon\n")
    with pytest.raises(ClockError, match="expected seconds since the epoch, got 'noon'"):
        FileClock(tmp_path / "bad")

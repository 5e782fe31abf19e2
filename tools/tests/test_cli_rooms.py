"""The `kagi` command: every room is offered, and a room's command runs on its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools import cli


def kagi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_offers_every_room():
    shown = kagi("--help")
    assert shown.returncode == 0
    for room in ("unit", "cloud", "card", "board"):
        assert room in shown.stdout


def test_an_unknown_room_is_refused_naming_the_rooms():
    refused = kagi("garage")
    assert refused.returncode == 2
    assert "invalid choice: 'garage'" in refused.stderr
    assert "unit" in refused.stderr and "cloud" in refused.stderr


@pytest.mark.parametrize("room", ["unit", "cloud", "card", "board"])
def test_each_room_answers_on_its_own(room, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--debug", room, "--help"])
    assert done.value.code == 0
    assert f"usage: kagi {room}" in capsys.readouterr().out

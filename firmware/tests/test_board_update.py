"""The unit sends a release's board firmware on (SPEC O-OTA-1, O-OTA-3), against the simulated
board: the real MicroPython unix port as the chip, its USB console a pty, its link read by the
unit's own adapter. A new build is flashed and runs; a board that runs it already is left
alone; a build that never says hello is replaced by the one before, which runs again."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boards.sim.rig import SimBoard
from firmware.board_flash import BOARDS, Firmware, firmware, flash, from_files
from firmware.board_link import BoardLink
from firmware.board_update import update_board

pytestmark = pytest.mark.slow


def changed(tmp: Path, main_py: bytes | None = None) -> Firmware:
    """The repository's pico firmware with one change: a new build."""
    root = tmp / "boards"
    for part in ("common", "pico"):
        shutil.copytree(BOARDS / part, root / part)
    app = root / "common" / "app.py"
    app.write_text(app.read_text() + "\n# the next release\n")
    if main_py is not None:
        (root / "common" / "main.py").write_bytes(main_py)
    return firmware("pico", root)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[SimBoard, BoardLink]]:
    """A pico running the repository's firmware, and the unit's link to it."""
    with SimBoard(tmp_path / "board", "pico", flashable=True) as sim:
        flash(sim.console_port, "pico", patience=0.5)
        body = BoardLink(sim.host_port)
        body.start(lambda _event: None)
        try:
            yield sim, body
        finally:
            body.stop()


def build_now(body: BoardLink) -> str | None:
    status = body.status()
    return status["board"]["build"] if status["up"] and status["board"] else None


def wait_build(body: BoardLink, build: str) -> None:
    deadline = time.monotonic() + 10
    while build_now(body) != build:
        assert time.monotonic() < deadline, f"no hello with build {build}"
        time.sleep(0.05)


def test_a_new_build_is_flashed_and_runs(board: tuple[SimBoard, BoardLink], tmp_path: Path) -> None:
    sim, body = board
    before = firmware("pico")
    wait_build(body, before.build)
    new = from_files("pico", changed(tmp_path).wanted())  # as the release carries it
    done = update_board(sim.console_port, new, before, lambda: build_now(body), patience=15)
    assert (done.result, done.build) == ("updated", new.build)
    assert build_now(body) == new.build
    again = update_board(sim.console_port, new, before, lambda: build_now(body), patience=15)
    assert again.result == "kept", "a board that runs the release's build is left alone"


def test_a_build_that_never_says_hello_gives_way_to_the_one_before(
    board: tuple[SimBoard, BoardLink], tmp_path: Path
) -> None:
    sim, body = board
    before = firmware("pico")
    wait_build(body, before.build)
    broken = changed(tmp_path, main_py=b"raise SystemExit('a broken release')\n")
    done = update_board(sim.console_port, broken, before, lambda: build_now(body), patience=3)
    assert (done.result, done.build) == ("rolled_back", before.build)
    assert done.reason == f"the board did not say hello with build {broken.build} within 3 s"
    assert build_now(body) == before.build
    assert (sim.fs / "main.py").read_bytes() == (BOARDS / "common" / "main.py").read_bytes()


def test_a_release_whose_board_files_do_not_match_their_manifest_is_refused(
    tmp_path: Path,
) -> None:
    files = changed(tmp_path).wanted()
    files["app.py"] += b"# changed after the manifest was made\n"
    with pytest.raises(Exception, match="not those its manifest lists"):
        from_files("pico", files)
    with pytest.raises(Exception, match="is for 'pico', not 'esp32'"):
        from_files("esp32", changed(tmp_path / "2").wanted())

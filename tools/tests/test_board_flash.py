"""`kagi board flash | verify` against a blank simulated board: the real MicroPython unix port as
the chip, its filesystem a folder, its USB console a pty where mpremote's transport takes the raw
REPL with `resume` (issue 8). The board's hello on its link port is read back by the unit's own
adapter. Each error a technician can meet has its one line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from boards.common import link
from boards.sim.rig import SimBoard
from firmware.board_link import BoardLink
from tools import flash as fl
from tools.cli import main

COMMON = sorted(p.name for p in (fl.BOARDS / "common").glob("*.py") if p.name != "__init__.py")
ORDER = ["app.py", "link.py", "outputs.py", "pins.py", "switches.py", "main.py", "manifest.json"]


@pytest.fixture
def blank(tmp_path: Path) -> Iterator[SimBoard]:
    """A new Pico: MicroPython on it, nothing else."""
    with SimBoard(tmp_path / "board", "pico", flashable=True) as sim:
        yield sim


def kagi(*args: str) -> int:
    return main(["board", *args])


def flash_args(sim: SimBoard, *more: str) -> list[str]:
    return ["flash", "--board", "pico", "--port", sim.console_port, "--timeout", "0.5", *more]


def board_files(sim: SimBoard) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sim.fs.iterdir() if p.is_file()}


def mtimes(sim: SimBoard) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sim.fs.iterdir() if p.is_file()}


def test_a_blank_board_is_flashed_checked_and_reports_its_build_in_its_hello(blank, capsys):
    # issue 8: one command copies common + pin map, checks SHA-256 on the board, writes the
    # manifest last and starts the firmware; S-SYNC-4: the board names its firmware and build
    assert kagi(*flash_args(blank, "--link", blank.host_port)) == 0
    out = capsys.readouterr()
    files = board_files(blank)
    for name in COMMON:
        assert files[name] == (fl.BOARDS / "common" / name).read_bytes(), name
    assert files["pins.py"] == (fl.BOARDS / "pico" / "pins.py").read_bytes()
    manifest = json.loads(files["manifest.json"])
    assert (manifest["board"], manifest["pinmap"], manifest["firmware"]) == (
        "pico",
        "pico-r1",
        "0.1.0",
    )
    assert manifest["files"] == {n: fl.sha256(d) for n, d in files.items() if n != "manifest.json"}
    build = manifest["build"]
    assert f"flashed pico build {build}: wrote app.py, link.py, outputs.py" in out.out
    assert "(SHA-256 checked on the board)" in out.out
    assert f"the board says hello: pico firmware 0.1.0, pin map pico-r1, build {build}" in out.out
    # the files went to NAME.tmp first; none is left, and nothing else was written
    assert sorted(files) == sorted(ORDER)
    # the progress went by file (a line each when not on a terminal)
    assert "  manifest.json" in out.err and "kB written" in out.err
    # the car unit's adapter sees the build in the board's hello
    body = BoardLink(blank.host_port)
    body.start(lambda _event: None)
    try:
        deadline = time.monotonic() + 5
        while not body.up and time.monotonic() < deadline:
            time.sleep(0.02)
        assert body.status()["board"]["build"] == build
    finally:
        body.stop()


def test_verify_reads_the_board_and_writes_nothing(blank, capsys):
    # issue 8: `kagi board verify` checks a board against the repository without writing
    assert kagi(*flash_args(blank)) == 0
    blank.wait_firmware()
    (blank.fs / "held.json").write_text('{"immobiliser": true, "keybox": true}')  # the board's own
    before, stamps = board_files(blank), mtimes(blank)
    capsys.readouterr()
    assert kagi("verify", "--board", "pico", "--port", blank.console_port) == 0
    out = capsys.readouterr().out
    assert "every file as in the repository" in out
    assert "(also on the board, not the firmware's: held.json)" in out
    blank.wait_firmware()  # verify stopped the firmware to read the board, and restarted it
    (blank.fs / "outputs.py").write_bytes(b"# flash rot\n")  # a file changes on the board
    del before["outputs.py"]
    assert kagi("verify", "--board", "pico", "--port", blank.console_port) == 1
    out = capsys.readouterr().out
    assert "  outputs.py       DIFFERS" in out
    assert "`kagi board flash` writes exactly these" in out and ": outputs.py;" in out
    after = board_files(blank)
    for name, data in before.items():
        assert after[name] == data and mtimes(blank)[name] == stamps[name], name


def test_a_corrupted_file_is_repaired_and_only_it(blank, capsys):
    # issue 8: the next flash writes exactly the files that differ
    assert kagi(*flash_args(blank)) == 0
    blank.wait_firmware()
    (blank.fs / "outputs.py").write_bytes(b"garbage")
    stamps = mtimes(blank)
    capsys.readouterr()
    assert kagi(*flash_args(blank, "--link", blank.host_port)) == 0
    out = capsys.readouterr().out
    assert "wrote outputs.py (SHA-256 checked on the board); 6 already right" in out
    now = mtimes(blank)
    for name in ORDER:
        if name != "outputs.py":
            assert now[name] == stamps[name], f"{name} was written again"
    assert (blank.fs / "outputs.py").read_bytes() == (fl.BOARDS / "common/outputs.py").read_bytes()
    blank.wait_firmware()  # and the board runs again
    # a second run finds nothing to do
    assert kagi(*flash_args(blank)) == 0
    assert "every file already right, nothing written" in capsys.readouterr().out


def test_an_interrupted_flash_leaves_no_firmware_half_there_and_the_next_run_finishes(blank):
    # issue 8: the USB cable is pulled while outputs.py is being written
    def pull_the_cable(name: str, done: int, total: int) -> None:
        if name == "outputs.py.tmp" and done >= 512:
            blank.usb(False)

    with pytest.raises(fl.LostBoard, match=r"stopped answering while writing outputs\.py\.tmp"):
        fl.flash(blank.console_port, "pico", pull_the_cable, patience=0.3)
    left = board_files(blank)
    assert "main.py" not in left and "manifest.json" not in left
    assert left["app.py"] == (fl.BOARDS / "common/app.py").read_bytes()
    assert 0 < len(left["outputs.py.tmp"]) < len((fl.BOARDS / "common/outputs.py").read_bytes())
    # plugged back in (a Pico is powered by its USB cable: it restarts)
    blank.usb(True)
    blank.restart()
    assert not blank.firmware_running and "no main.py" in blank.console_text()
    result = fl.flash(blank.console_port, "pico", patience=0.5)
    assert result.written == ["outputs.py", "pins.py", "switches.py", "main.py", "manifest.json"]
    assert result.kept == ["app.py", "link.py"] and result.removed == ["outputs.py.tmp"]
    blank.wait_firmware()
    assert fl.hello_on_link(blank.host_port).build == result.build


def test_a_running_board_is_stopped_before_its_files_change(blank):
    # issue 8: a running firmware has its watchdog armed; the flash parks main.py and resets the
    # board first, so no watchdog bites in the middle and the new firmware starts afterwards
    result = fl.flash(blank.console_port, "pico", patience=0.5)
    blank.wait_firmware()
    (blank.fs / "switches.py").write_bytes(b"# old\n")  # an older file on a running board
    boots = blank.boots
    again = fl.flash(blank.console_port, "pico", patience=0.5)
    assert again.written == ["switches.py"] and again.build == result.build
    blank.wait_firmware()
    assert blank.resets.count("watchdog") == 0
    assert blank.boots == boots + 2  # reset with main.py parked, then reset to run


def test_a_board_of_another_kind_is_refused_before_anything_is_written(tmp_path, capsys):
    # issue 8: an ESP32 on the cable while flashing a Pico
    with SimBoard(tmp_path / "esp", "esp32", flashable=True) as esp:
        assert kagi("flash", "--board", "pico", "--port", esp.console_port) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("kagi board flash: refused: this board's chip is esp32")
        assert err.endswith("a pico has rp2; check --board (or KAGI_BOARD)")
        assert "\n" not in err
        assert board_files(esp) == {}


def test_a_board_flashed_as_another_board_is_refused():
    info = fl.BoardInfo("rp2", "Raspberry Pi Pico", False, {}, {"board": "pico-w"})
    with pytest.raises(fl.WrongBoard, match="flashed as 'pico-w', not 'pico'"):
        fl.check_board(info, "pico")


def test_options_come_from_the_environment(blank, monkeypatch, capsys):
    # issue 8: KAGI_BOARD and KAGI_PORT, as labgrid and mpremote take theirs
    assert kagi("verify", "--port", blank.console_port) == 2
    assert "kagi board verify: --board is needed (or set KAGI_BOARD)" in capsys.readouterr().err
    monkeypatch.setenv("KAGI_BOARD", "pico")
    monkeypatch.setenv("KAGI_PORT", blank.console_port)
    monkeypatch.setenv("KAGI_TIMEOUT", "0.5")
    assert kagi("flash") == 0
    assert kagi("verify") == 0
    assert "every file as in the repository" in capsys.readouterr().out


# ---- each error, one line --------------------------------------------------------------------


def one_line(capsys) -> str:
    err: str = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_no_device(capsys):
    assert kagi("flash", "--board", "pico", "--port", "/dev/ttyKAGI404") == 2
    assert one_line(capsys) == (
        "kagi board flash: no device at /dev/ttyKAGI404 (is the board plugged in? `ls /dev/tty*`)"
    )
    # --debug: the traceback instead
    with pytest.raises(fl.NoDevice):
        main(["--debug", "board", "flash", "--board", "pico", "--port", "/dev/ttyKAGI404"])
    with pytest.raises(fl.NoDevice):
        kagi("flash", "--board", "pico", "--port", "/dev/ttyKAGI404", "--debug")


def test_debug_comes_from_the_environment_too(monkeypatch):
    monkeypatch.setenv("KAGI_DEBUG", "1")
    with pytest.raises(fl.NoDevice):
        kagi("verify", "--board", "pico", "--port", "/dev/ttyKAGI404")


def test_busy_port(blank, capsys):
    with serial.Serial(blank.console_port, exclusive=True):  # mpremote (or a monitor) holds it
        assert kagi(*flash_args(blank)) == 2
    assert one_line(capsys) == (
        f"kagi board flash: {blank.console_port} is busy: another program has it open (a kagi "
        "unit, mpremote, screen, a serial monitor); close it and try again"
    )
    assert board_files(blank) == {}


def test_not_a_micropython_board(blank, capsys):
    # the board's link port (the car unit's cable) instead of its USB console
    assert kagi("verify", "--board", "pico", "--port", blank.host_port, "--timeout", "0.3") == 2
    err = one_line(capsys)
    assert err.startswith(
        f"kagi board verify: {blank.host_port} is not a MicroPython board: no raw REPL answered"
    )
    assert err.endswith("the board's link port instead of its USB console?)")


def test_no_permission(blank, tmp_path):
    # as a technician not in the port's group: root without its power over file modes
    os.chown(blank.console_port, 65534, 65534)
    os.chmod(blank.console_port, 0o600)
    script = Path(sys.executable).with_name("kagi")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]
    proc = subprocess.run(
        [
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-all",
            *command,
            "board",
            "flash",
            "--board",
            "pico",
            "--port",
            blank.console_port,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"kagi board flash: no permission to open {blank.console_port}: add yourself to its "
        "group (`sudo usermod -aG dialout $USER`, then log in again)\n"
    )


def test_open_errors_are_named_by_their_cause(monkeypatch):
    # the errnos a USB serial port gives besides those above (a port that vanished, a tty locked)
    for code, kind in ((errno.ENXIO, fl.NoDevice), (errno.EBUSY, fl.PortBusy)):

        def refuse(*_args, _code=code, **_kwargs):
            raise serial.SerialException(_code, "could not open port")

        monkeypatch.setattr(serial, "Serial", refuse)
        assert isinstance(fl._open_error("/dev/ttyACM0"), kind)


def test_the_manifest_build_travels_in_the_hello_only_when_there_is_one():
    # older boards (no build) still parse; a flashed one carries its build as a fourth text
    plain = link.Hello(1, 7, 1, 0, "pico", "0.1.0", "pico-r1")
    assert link.Hello.parse(plain.payload()).build == ""
    built = link.Hello(1, 7, 1, 0, "pico", "0.1.0", "pico-r1", "407457906a55")
    assert len(built.payload()) == len(plain.payload()) + 13
    assert link.Hello.parse(built.payload()).build == "407457906a55"
    with pytest.raises(ValueError, match="bytes too many"):
        link.Hello.parse(built.payload() + b"\x00")

"""Flash and verify an I/O board over its USB console, through MicroPython's raw REPL: what a
technician's `kagi board flash | verify` does (tools/board.py), and what the car unit does to
send a release's board firmware on (SPEC O-OTA-3, firmware/board_update.py).

mpremote's transport is the library that speaks the raw REPL (`resume`: no soft reset, which the
unix port of the simulated board cannot do). What this module adds is the technician's safety:

- the board is identified first (its chip: `sys.platform`, and the manifest of its last flash),
  and a board of another kind is refused before anything is written;
- files whose SHA-256 on the board already matches the repository are left alone: a repeated or
  interrupted flash writes exactly the files that differ;
- each file goes to `NAME.tmp`, its SHA-256 is computed *on the board*, and only a matching copy
  is renamed into place: a file is whole or absent, never half-written;
- `main.py` is parked (`main.py.off`) before the first write and put back only after every module
  is in place, and the manifest (`manifest.json`: firmware version, board, pin map, file hashes
  and a build id the board reports in its hello) is written last. An interrupted flash therefore
  leaves a board that boots to its REPL, never half a firmware.

A board that was running its firmware has its watchdog armed (`machine.WDT` cannot be stopped): it
would reset in the middle of the flash. So once `main.py` is parked the board is reset, and the
flash goes on at the REPL of a board that runs nothing.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import serial
import serial.tools.list_ports
from mpremote.transport import (  # type: ignore[import-untyped]
    TransportError,
    TransportExecError,
)
from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

import boards
from boards.common import link

BOARDS = Path(boards.__file__).resolve().parent
PLATFORMS = {"pico": "rp2", "esp32": "esp32"}  # the chip (MicroPython's sys.platform) of each
MANIFEST = "manifest.json"
MAIN = "main.py"
PARKED = "main.py.off"  # main.py while the board is being flashed: the board runs nothing
TMP = ".tmp"
PATIENCE_S = 3.0  # the longest the board may stay silent in the middle of an answer
RESET_WAIT_S = 10.0  # a real board's USB port comes back within this after a reset

Progress = Callable[[str, int, int], None]  # (file, bytes written, bytes of the file)


class FlashError(Exception):
    """A reason the board could not be flashed or verified; the message is one line."""


class NoDevice(FlashError):
    pass


class PortBusy(FlashError):
    pass


class NoPermission(FlashError):
    pass


class NotMicroPython(FlashError):
    pass


class WrongBoard(FlashError):
    pass


class LostBoard(FlashError):
    """The board stopped answering in the middle (cable pulled, board reset)."""


# ---- what the repository says the board must hold ------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _constant(path: Path, name: str) -> str:
    """A module-level string constant of a board file, read without running it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise FlashError(f'{path}: no {name} = "..." in it')


@dataclass(frozen=True)
class Firmware:
    """The files a board gets, flat as it imports them, and their manifest."""

    board: str
    files: dict[str, bytes]  # name on the board -> content (the manifest not included)
    manifest: dict[str, Any]

    @property
    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=1, sort_keys=True) + "\n").encode()

    @property
    def build(self) -> str:
        return str(self.manifest["build"])

    def wanted(self) -> dict[str, bytes]:
        """Every file of the board, the manifest included, in the order they are written:
        the modules, then main.py, then the manifest."""
        order = [*sorted(n for n in self.files if n != MAIN), MAIN]
        return {**{n: self.files[n] for n in order}, MANIFEST: self.manifest_bytes}


def from_files(board: str, files: dict[str, bytes]) -> Firmware:
    """A board's firmware as a release carries it (its files and `manifest.json`, as
    `Firmware.wanted()` gives them), checked against its own manifest."""
    if MANIFEST not in files:
        raise FlashError(f"the {board} firmware has no {MANIFEST}")
    try:
        manifest = json.loads(files[MANIFEST])
    except ValueError as exc:
        raise FlashError(f"the {board} firmware's {MANIFEST} does not parse: {exc}") from None
    modules = {n: d for n, d in files.items() if n != MANIFEST}
    if manifest.get("board") != board:
        raise FlashError(f"the firmware is for {manifest.get('board')!r}, not {board!r}")
    if manifest.get("files") != {n: sha256(d) for n, d in sorted(modules.items())}:
        raise FlashError(f"the {board} firmware's files are not those its manifest lists")
    return Firmware(board, modules, manifest)


def firmware(board: str, root: Path = BOARDS) -> Firmware:
    """`common/*.py` and the board's own `<board>/*.py` of the boards folder `root` (this
    kagi's, or an install slot's), and their manifest."""
    if board not in PLATFORMS:
        raise FlashError(f"no board {board!r}; kagi flashes: {', '.join(sorted(PLATFORMS))}")
    files: dict[str, bytes] = {}
    for folder in (root / "common", root / board):
        for path in sorted(folder.glob("*.py")):
            if path.name == "__init__.py":
                continue
            if path.name in files:
                raise FlashError(f"{path}: a common file has the same name")
            files[path.name] = path.read_bytes()
    if MAIN not in files or "pins.py" not in files:
        raise FlashError(f"{root}: main.py or the {board} pin map is missing")
    hashes = {name: sha256(data) for name, data in sorted(files.items())}
    build = sha256("".join(f"{n} {h}\n" for n, h in hashes.items()).encode())[:12]
    manifest = {
        "kagi_manifest": 1,
        "board": board,
        "pinmap": _constant(root / board / "pins.py", "PINMAP"),
        "firmware": _constant(root / "common" / "app.py", "FIRMWARE"),
        "build": build,
        "files": hashes,
    }
    return Firmware(board, files, manifest)


# ---- the board's console ------------------------------------------------------------------------


class _Transport(SerialTransport):  # type: ignore[misc]
    """mpremote's serial transport, with a bound on how long the board may stay silent
    (mpremote waits 10 s per character, and a pty read with no timeout waits for ever)."""

    def __init__(self, port: str, patience: float) -> None:
        super().__init__(port, baudrate=115200, timeout=patience)
        self.patience = patience

    def read_until(
        self,
        min_num_bytes: int,
        ending: bytes,
        timeout: float | None = 10,
        data_consumer: Any = None,
        timeout_overall: float | None = None,
    ) -> bytes:
        timeout = self.patience if timeout is None else min(timeout, self.patience)
        data: bytes = super().read_until(
            min_num_bytes, ending, timeout, data_consumer, timeout_overall
        )
        return data


PROBE = """
import os, sys, hashlib, binascii
def _kagi_sha(n):
    h = hashlib.sha256()
    with open(n, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            h.update(b)
    return binascii.hexlify(h.digest()).decode()
_p = sys.platform
if _p == 'linux':
    _p = os.getenv('KAGI_SIM_PLATFORM') or _p
_f = [e[0] for e in os.ilistdir() if e[1] & 0x8000]
_m = None
if 'manifest.json' in _f:
    with open('manifest.json') as _h:
        _m = _h.read()
print(repr({'platform': _p, 'machine': getattr(sys.implementation, '_machine', _p),
 'running': 'app' in sys.modules, 'hashes': {n: _kagi_sha(n) for n in _f}, 'manifest': _m}))
"""


@dataclass
class BoardInfo:
    """What the board says of itself and holds."""

    platform: str
    machine: str
    running: bool  # its firmware was running (and so its watchdog is armed)
    hashes: dict[str, str]  # every file at the root of its filesystem
    manifest: dict[str, Any] | None

    @property
    def manifest_board(self) -> str | None:
        return None if self.manifest is None else str(self.manifest.get("board"))


def find_port() -> str:
    """The one USB serial port plugged in (as `mpremote connect auto` would pick)."""
    ports: list[str] = [p.device for p in serial.tools.list_ports.comports() if p.vid is not None]
    if not ports:
        raise NoDevice(
            "no device: no USB serial port found; plug the board in, or give --port (or KAGI_PORT)"
        )
    if len(ports) > 1:
        raise FlashError(f"several USB serial ports ({', '.join(ports)}): choose one with --port")
    return ports[0]


def _open_error(port: str) -> FlashError:
    """Why `port` cannot be opened, found by opening it as mpremote does (exclusively)."""
    try:
        serial.Serial(port, exclusive=True).close()
    except serial.SerialException as exc:
        code = exc.errno
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            return NoDevice(f"no device at {port} (is the board plugged in? `ls /dev/tty*`)")
        if code in (errno.EACCES, errno.EPERM):
            return NoPermission(
                f"no permission to open {port}: add yourself to its group "
                f"(`sudo usermod -aG dialout $USER`, then log in again)"
            )
        if code in (errno.EAGAIN, errno.EBUSY):
            return PortBusy(
                f"{port} is busy: another program has it open (a kagi unit, mpremote, "
                "screen, a serial monitor); close it and try again"
            )
        return FlashError(f"cannot open {port}: {exc}")
    return FlashError(f"cannot open {port} (it opened on a second try: run again)")


class Console:
    """The board's raw REPL on its USB console, as a context manager."""

    def __init__(self, port: str, patience: float = PATIENCE_S) -> None:
        self.port = port
        self.patience = patience
        self.transport: Any = None

    def __enter__(self) -> Console:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Open the port and take the raw REPL, interrupting what runs (no soft reset)."""
        try:
            self.transport = _Transport(self.port, self.patience)
        except TransportError:
            raise _open_error(self.port) from None
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said):  # mpremote prints what it got instead
                self.transport.enter_raw_repl(
                    soft_reset=False, timeout_overall=max(2.0, 2 * self.patience)
                )
        except (TransportError, serial.SerialException, OSError) as exc:
            self.close()
            got = said.getvalue().strip()
            raise NotMicroPython(
                f"{self.port} is not a MicroPython board: no raw REPL answered "
                f"({got[:60] if got else 'it said nothing'}; the board's link port instead "
                "of its USB console?)"
            ) from exc

    def close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    @contextlib.contextmanager
    def _step(self, what: str) -> Iterator[None]:
        try:
            yield
        except TransportExecError as exc:  # it answered, with an error
            lines = str(exc.error_output).strip().splitlines()
            raise FlashError(
                f"the board failed {what}: {lines[-1] if lines else 'no reason given'}"
            ) from exc
        except (TransportError, serial.SerialException, OSError) as exc:
            raise LostBoard(
                f"the board stopped answering while {what} (cable pulled? board reset?): "
                "nothing half-written is used; run the command again to finish"
            ) from exc

    def probe(self) -> BoardInfo:
        with self._step("reading its files"):
            text = self.transport.exec(PROBE).decode()
        raw = ast.literal_eval(text.strip())
        manifest = None
        if raw["manifest"] is not None:
            with contextlib.suppress(ValueError):
                loaded = json.loads(raw["manifest"])
                manifest = loaded if isinstance(loaded, dict) else None
        return BoardInfo(raw["platform"], raw["machine"], raw["running"], raw["hashes"], manifest)

    def hash(self, name: str) -> str:
        with self._step(f"checking {name}"):
            digest: bytes = self.transport.fs_hashfile(name, "sha256")
        return digest.hex()

    def write(self, name: str, data: bytes, progress: Progress | None = None) -> None:
        def step(done: int, total: int) -> None:
            if progress is not None:
                progress(name, done, total)

        with self._step(f"writing {name}"):
            self.transport.fs_writefile(name, data, progress_callback=step)
        if not data and progress is not None:
            progress(name, 0, 0)

    def rename(self, old: str, new: str) -> None:
        with self._step(f"renaming {old}"):
            self.transport.exec(f"import os\nos.rename({old!r}, {new!r})")

    def remove(self, name: str) -> None:
        with self._step(f"removing {name}"):
            self.transport.exec(f"import os\nos.remove({name!r})")

    def reset(self, reconnect: bool) -> None:
        """machine.reset(); with `reconnect`, take the REPL again once the board is back."""
        with contextlib.suppress(Exception):
            self.transport.exec_raw_no_follow("import machine\nmachine.reset()")
        self.close()
        if not reconnect:
            return
        deadline = time.monotonic() + RESET_WAIT_S
        while True:
            try:
                self.connect()
                return
            except FlashError:
                if time.monotonic() > deadline:
                    raise LostBoard(
                        f"the board did not come back on {self.port} after its reset"
                    ) from None
                time.sleep(0.2)


# ---- flash and verify ------------------------------------------------------------------------


def check_board(info: BoardInfo, board: str) -> None:
    """Refuses a board of another kind than `board` (its chip, or the board its manifest
    names)."""
    want = PLATFORMS[board]
    if info.platform != want:
        raise WrongBoard(
            f"refused: this board's chip is {info.platform} ({info.machine}); a {board} has "
            f"{want}; check --board (or KAGI_BOARD)"
        )
    named = info.manifest_board
    if named is not None and named != board:
        raise WrongBoard(
            f"refused: this board was flashed as {named!r}, not {board!r}; check --board "
            "(or KAGI_BOARD)"
        )


@dataclass
class FileCheck:
    name: str
    state: str  # "ok", "differs", "missing"


@dataclass
class VerifyResult:
    board: str
    build: str  # the repository's
    board_build: str | None  # the board's manifest's
    files: list[FileCheck]
    others: list[str]  # files on the board that are not the firmware's (held.json…)

    @property
    def ok(self) -> bool:
        return all(f.state == "ok" for f in self.files)


def compare(fw: Firmware, info: BoardInfo) -> VerifyResult:
    files = []
    for name, data in fw.wanted().items():
        have = info.hashes.get(name)
        state = "missing" if have is None else "ok" if have == sha256(data) else "differs"
        files.append(FileCheck(name, state))
    others = sorted(set(info.hashes) - set(fw.wanted()))
    board_build = None if info.manifest is None else str(info.manifest.get("build"))
    return VerifyResult(fw.board, fw.build, board_build, files, others)


def verify(port: str, board: str | Firmware, patience: float = PATIENCE_S) -> VerifyResult:
    """The board against the repository's firmware for `board` (or the firmware given), without
    writing anything. A board that was running its firmware is reset afterwards, so that it runs
    again."""
    fw = board if isinstance(board, Firmware) else firmware(board)
    with Console(port, patience) as console:
        info = console.probe()
        _check_or_restart(console, info, fw.board)
        if info.running:
            console.reset(reconnect=False)
    return compare(fw, info)


def _check_or_restart(console: Console, info: BoardInfo, board: str) -> None:
    """check_board; a refused board that was running is restarted as it was."""
    try:
        check_board(info, board)
    except WrongBoard:
        if info.running:
            console.reset(reconnect=False)
        raise


@dataclass
class FlashResult:
    board: str
    build: str
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # already right on the board
    removed: list[str] = field(default_factory=list)  # leftovers of an interrupted flash, stale


def flash(
    port: str,
    board: str | Firmware,
    progress: Progress | None = None,
    patience: float = PATIENCE_S,
    say: Callable[[str], None] | None = None,
) -> FlashResult:
    """Bring the board to the repository's firmware for `board` (or the firmware given: a
    release's), writing only what differs, and start it. Raises FlashError (one line) when it
    cannot."""
    tell = say or (lambda _text: None)
    fw = board if isinstance(board, Firmware) else firmware(board)
    board = fw.board
    wanted = fw.wanted()
    result = FlashResult(board, fw.build)
    with Console(port, patience) as console:
        info = console.probe()
        _check_or_restart(console, info, board)
        tell(f"{port}: a {info.platform} board ({info.machine})")
        hashes = info.hashes
        differ = [n for n, data in wanted.items() if hashes.get(n) != sha256(data)]
        old_files = list((info.manifest or {}).get("files", {}))
        leftovers = [n for n in hashes if n.endswith(TMP) or (n in old_files and n not in wanted)]
        if not differ and not leftovers and PARKED not in hashes:
            tell(f"already up to date: build {fw.build}")
            console.reset(reconnect=False)  # the firmware (re)starts
            return result

        # nothing may start while files change: park main.py, and stop the running firmware
        if MAIN in hashes:
            if PARKED in hashes:
                console.remove(PARKED)
            console.rename(MAIN, PARKED)
            hashes[PARKED] = hashes.pop(MAIN)
        if info.running:
            tell("stopping the running firmware (reset with main.py parked)")
            console.reset(reconnect=True)
        if MANIFEST in differ and MANIFEST in hashes:
            console.remove(MANIFEST)  # the old seal goes first, the new one comes last
        for name in leftovers:
            console.remove(name)
            result.removed.append(name)

        for name, data in wanted.items():
            if name == MAIN and hashes.get(PARKED) == sha256(data):
                console.rename(PARKED, MAIN)  # the parked one is the right one: back it goes
                del hashes[PARKED]
                continue
            if name not in differ:
                continue
            console.write(name + TMP, data, progress)
            got = console.hash(name + TMP)
            if got != sha256(data):
                raise FlashError(
                    f"{name}: its SHA-256 on the board is {got[:12]}…, expected "
                    f"{sha256(data)[:12]}…; the copy was not used — run again"
                )
            console.rename(name + TMP, name)
            result.written.append(name)
            if name == MAIN and PARKED in hashes:
                console.remove(PARKED)
                del hashes[PARKED]

        final = console.probe()
        wrong = [n for n, data in wanted.items() if final.hashes.get(n) != sha256(data)]
        if wrong:
            raise FlashError(f"after the flash, {', '.join(wrong)} differ on the board; run again")
        console.reset(reconnect=False)  # the firmware starts
    result.kept = [n for n in wanted if n not in result.written]
    return result


def hello_on_link(url: str, timeout: float = 10.0) -> link.Hello:
    """The board's hello on its link port (where the car unit talks to it), once its firmware
    answers: the proof that the flashed firmware runs and reports the flashed build."""
    try:
        port = serial.serial_for_url(url, baudrate=115200, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise FlashError(f"cannot open the link port {url}: {exc}") from None
    decoder = link.Decoder()
    deadline = time.monotonic() + timeout
    seq = 0
    try:
        while time.monotonic() < deadline:
            seq = seq % 255 + 1
            port.write(link.command(seq, "hello", link.VERSION))
            wait = time.monotonic() + 0.3
            while time.monotonic() < wait:
                for item in decoder.feed(port.read(port.in_waiting or 1)):
                    if not isinstance(item, link.Frame):
                        continue
                    if item.kind == link.HELLO:  # the boot hello, said by itself
                        return link.Hello.parse(item.payload)
                    if item.kind == link.ACK and item.seq == seq and item.payload[:1] == b"\0":
                        return link.Hello.parse(item.payload[1:])
    finally:
        port.close()
    raise FlashError(f"no hello from the board on {url} within {timeout:g} s")

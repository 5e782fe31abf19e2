"""The HIL rig: a whole car and its cloud as real processes, driven in the car's own words.

A rig file (`hil_tests/rigs/NAME.toml`) names the rig's kind and what it can do. `SimRig` builds
the `sim` rig on this machine, the way an operator and a technician would:

    kagi cloud demo            the demo fleet (member, drivers, cards, cars) in SQLite
    kagi cloud serve           API + embedded MQTT broker + sync + mails, on the rig's clock
    boards/sim                 the I/O board's firmware under MicroPython, its switches and relays
    kagi unit provision        the car unit's configuration, checked against board and broker
    kagi unit run              the car unit: nfcpy reader on udp, the board on its pty, MQTT
    kagi card emulate          one process per tap, a FeliCa card in the reader's field

The rig owns the clock: the cloud reads it from a file (`--clock file:…`), the unit runs a manual
clock moved over its control socket, and `advance(minutes=10)` moves both at once. The board
keeps real time (its relays and lamps are milliseconds, not car minutes).

Tests speak the rig's language: `tap(card)`, `open_door("driver")`, `take_key()`,
`return_key()`, `brake(True)`, `engine(False)`, `advance(minutes=10)`, `outputs`, `since(mark)`,
`phone(driver)`, `mails`, `cut_signal()`, `power_cut()`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boards.sim.rig import SimBoard
from cloud.cli import DEMO_FLEET_KEY, DEMO_PASSWORD
from cloud.clock import FileClock
from cloud.tests.mailbox import Mailbox
from firmware.prompts import CATALOGUE
from firmware.tests.unit_process import UnitProcess, kagi_command
from hil_tests.phone import JST, Phone
from hil_tests.relay import Relay

RIGS = Path(__file__).resolve().parent / "rigs"
KINDS = ("sim", "real")
FEATURES = ("board", "reader", "card", "cloud", "mail", "network", "power_cut", "clock")
CAR = "car-001"
STATION = "tokai-1"
STATION_POSITION = (36.4466, 140.6065)  # the demo station's centre
CARDS = {  # the demo drivers' cards (`kagi cloud demo`)
    "XXY00001001": "0101010101010101",
    "XXY00001002": "0202020202020202",
}
DOORS = ("driver", "passenger", "rear_left", "rear_right", "tailgate")
PROMPT_OF_CLIP = {p.clip: p.id for p in CATALOGUE}
# the board's settings on the rig: switches settle fast, relay pulses are short
BOARD_SETTINGS = {"debounce_ms": 10, "pulse_ms": 50}
WAIT = 10.0  # seconds a step may take before the rig calls it broken


class RigError(Exception):
    """A rig file or a rig part that is wrong; the message says what and where."""


@dataclass(frozen=True)
class RigFile:
    name: str
    kind: str
    description: str
    features: frozenset[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def lacks(self, feature: str) -> str | None:
        """Why a test needing `feature` cannot run on this rig (None: it can)."""
        if feature not in FEATURES:
            raise RigError(f"no rig feature {feature!r}; known: {', '.join(FEATURES)}")
        if feature in self.features:
            return None
        return f"rig {self.name!r} ({self.description}) has no {feature!r}"


def load_rig(name_or_path: str) -> RigFile:
    """`sim`, another name under hil_tests/rigs/, or a path to a rig file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = RIGS / f"{name_or_path}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = sorted(p.stem for p in RIGS.glob("*.toml") if not p.stem.endswith(".example"))
        raise RigError(f"no rig file {path} (rigs here: {', '.join(known)})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RigError(f"{path}: {exc}") from None
    rig = data.get("rig")
    if not isinstance(rig, dict):
        raise RigError(f"{path}: expected a [rig] table")
    kind = rig.get("kind")
    if kind not in KINDS:
        raise RigError(f"{path}: rig.kind: expected one of {KINDS}, got {kind!r}")
    features = rig.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise RigError(f"{path}: rig.features: expected a list of names")
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise RigError(f"{path}: rig.features: unknown {unknown}; known: {', '.join(FEATURES)}")
    settings = {k: v for k, v in rig.items() if k not in ("kind", "description", "features")}
    return RigFile(path.stem, kind, str(rig.get("description", "")), frozenset(features), settings)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def next_mark(t: dt.datetime, minutes: int = 15) -> dt.datetime:
    """The first 15-minute mark at or after `t`."""
    t = t.replace(second=0, microsecond=0) + (
        dt.timedelta(minutes=1) if t.second else dt.timedelta()
    )
    return t + dt.timedelta(minutes=(-t.minute) % minutes)


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll `check` until it returns something true; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class Mark:
    """Counts at one moment, to see what happened since (`SimRig.since`)."""

    unlocks: int
    locks: int
    hazard: int
    prompts: int
    taps: int


class SimRig:
    """The sim rig; `start()`, drive, `close()` (or a context manager)."""

    def __init__(self, folder: Path, rig: RigFile, start: dt.datetime | None = None) -> None:
        self.folder = folder
        self.rig = rig
        self.board_name = str(rig.settings.get("board", "pico"))
        first = start or next_mark(dt.datetime.now(JST) + dt.timedelta(days=1))
        self._now = first.timestamp()
        self.clock_path = folder / "clock"
        self.db = str(folder / "cloud.db")
        self.accounts = folder / "broker.passwd"
        self.reader_url = f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
        self.api_port = free_port()
        self.broker_port = free_port()
        self.mailbox = Mailbox()
        self.board: SimBoard | None = None
        self.unit: UnitProcess | None = None
        self.relay: Relay | None = None
        self._cloud: subprocess.Popen[bytes] | None = None
        self._phones: list[Phone] = []
        self._prompts_seen: list[str] = []

    # ---- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> SimRig:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        FileClock.write(self.clock_path, self._now)
        self.mailbox.start()
        self.kagi("cloud", "demo", "--db", self.db)
        self.start_cloud()
        self.relay = Relay(("127.0.0.1", self.broker_port))
        self.board = SimBoard(self.folder / "board", self.board_name, BOARD_SETTINGS)
        self.board.start()
        self.provision()
        self.unit = UnitProcess(self.folder / "unit")
        self.unit.start()
        self.wait_online()

    def start_cloud(self) -> None:
        log = open(self.folder / "cloud.log", "ab")  # noqa: SIM115 (the process keeps it)
        env = {**os.environ, "KAGI_BROKER_ACCOUNTS": str(self.accounts)}
        self._cloud = subprocess.Popen(
            [
                *kagi_command(),
                "cloud",
                "serve",
                "--db",
                self.db,
                "--port",
                str(self.api_port),
                "--broker-port",
                str(self.broker_port),
                "--clock",
                f"file:{self.clock_path}",
                "--smtp",
                f"smtp://127.0.0.1:{self.mailbox.port}",
            ],
            cwd=self.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()

        def listening() -> bool:
            assert self._cloud is not None
            if self._cloud.poll() is not None:
                raise RigError(f"kagi cloud serve exited:\n{self.cloud_log()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.api_port)) == 0

        wait_for(listening, "the cloud's API to listen", timeout=30)

    def provision(self) -> None:
        """`kagi unit provision` as a technician runs it, then the rig's own lines: the manual
        clock starting at the rig's time, the control socket."""
        assert self.board is not None and self.relay is not None
        config = self.folder / "unit" / "unit.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        # exit 1 with the reader as the only failed check is right here: on udp the reader
        # "fails" until a card is in the field (each tap is its own emulator process)
        report = self.kagi(
            "unit",
            "provision",
            "--config",
            str(config),
            "--car-id",
            CAR,
            "--cloud-db",
            self.db,
            "--station",
            STATION,
            "--accounts",
            str(self.accounts),
            "--broker",
            f"mqtt://127.0.0.1:{self.relay.port}",
            "--board",
            self.board.host_port,
            "--reader",
            self.reader_url,
            ok=(0, 1),
        )
        failed = [line for line in report.splitlines() if line.strip().startswith("FAILED")]
        if any(" reader " not in line for line in failed):
            raise RigError(f"kagi unit provision: a part failed its check\n{report}")
        text = config.read_text(encoding="utf-8")
        extra = f'clock = "manual"\nclock_start = {self._now}\ncontrol = "control.sock"\n'
        text = re.sub(r"^control = .*\n", "", text, flags=re.M)
        config.write_text(text.replace("[unit]\n", "[unit]\n" + extra, 1), encoding="utf-8")

    def wait_online(self) -> None:
        wait_for(
            lambda: self.status().get("cloud", {}).get("connected"),
            "the car to connect to the broker",
        )

    def close(self) -> None:
        for phone in self._phones:
            phone.close()
        if self.unit is not None:
            self.unit.close()
        if self.board is not None:
            self.board.close()
        if self._cloud is not None and self._cloud.poll() is None:
            self._cloud.send_signal(signal.SIGTERM)
            try:
                self._cloud.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._cloud.kill()
                self._cloud.wait()
        if self.relay is not None:
            self.relay.close()
        self.mailbox.stop()

    def kagi(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        """Run one `kagi` command to its end; its output, or RigError with it."""
        env = {**os.environ, "KAGI_BROKER_ACCOUNTS": str(self.accounts)}
        done = subprocess.run(
            [*kagi_command(), *args],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode not in ok:
            raise RigError(f"kagi {' '.join(args)} → {done.returncode}\n{done.stdout}{done.stderr}")
        return done.stdout

    # ---- the clock ----------------------------------------------------------------------------

    @property
    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._now, JST)

    def advance(self, minutes: float = 0, seconds: float = 0) -> dt.datetime:
        """Move car time for the cloud and the car together; returns once the car has fired
        what fell due."""
        step = minutes * 60 + seconds
        if step < 0:
            raise RigError("the rig's clock does not go back")
        self._now += step
        FileClock.write(self.clock_path, self._now)
        self._unit_request({"op": "set_time", "t": self._now})
        return self.now

    # ---- the card -----------------------------------------------------------------------------

    def tap(self, card: str, *, strong_key: str | None = None) -> dict[str, Any]:
        """Present the card (an IDm, or a demo driver's ID) until the car has read it, then take
        it away; returns the unit's status after the tap."""
        idm = CARDS.get(card, card)
        before = self._taps()
        args = ["card", "emulate", "--device", self.reader_url, "--idm", idm, "--seconds", "10"]
        if strong_key:
            args += ["--master-key", strong_key]
        emulator = subprocess.Popen(
            [*kagi_command(), *args],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: self._taps() > before, f"the car to read card {idm}")
        finally:
            emulator.send_signal(signal.SIGTERM)
            try:
                emulator.wait(timeout=5)
            except subprocess.TimeoutExpired:
                emulator.kill()
                emulator.wait()
            if emulator.stderr is not None:
                emulator.stderr.close()
        return self.status()  # answered after the tap was handled (the runner is in order)

    def _taps(self) -> int:
        assert self.unit is not None
        try:
            return self.unit.log_path.read_text(encoding="utf-8", errors="replace").count(
                "card tapped ("
            )
        except FileNotFoundError:
            return 0

    # ---- the car's switches (the board's inputs) ------------------------------------------------

    def open_door(self, door: str = "driver") -> None:
        self._door(door, True)

    def close_door(self, door: str = "driver") -> None:
        self._door(door, False)

    def _door(self, door: str, open_: bool) -> None:
        if door not in DOORS:
            raise RigError(f"no door {door!r}; doors: {', '.join(DOORS)}")
        self._switch(f"door_{door}" if door != "tailgate" else "tailgate", open_)
        self._seen(lambda s: s["sensors"]["doors"][door] is open_, f"door {door} open={open_}")

    def take_key(self) -> None:
        """Turn the key to 貸出 (out) and pull it from the key box."""
        self._switch("key_lend", True)
        self._switch("key_present", False)
        self._seen(lambda s: not s["sensors"]["key_present"], "the key taken")

    def return_key(self) -> None:
        """Put the key in the key box and turn it to 返却 (return)."""
        self._switch("key_present", True)
        self._switch("key_lend", False)
        self._seen(
            lambda s: s["sensors"]["key_present"] and s["sensors"]["key_position"] == "return",
            "the key returned",
        )

    def brake(self, on: bool) -> None:
        self._switch("brake", on)
        self._seen(lambda s: s["sensors"]["brake"] is on, f"brake={on}")

    def engine(self, running: bool) -> None:
        self._switch("engine", running)
        self._seen(lambda s: s["sensors"]["engine"] is running, f"engine={running}")

    def lights(self, on: bool) -> None:
        self._switch("lights", on)
        self._seen(lambda s: s["sensors"]["lights"] is on, f"lights={on}")

    def park(self, odometer_km: float = 1000.0, fuel_pct: float = 80.0) -> None:
        """The car's position and meters as its CAN/GPS would give them: at the station."""
        lat, lon = STATION_POSITION
        self._unit_request({"op": "position", "lat": lat, "lon": lon})
        self._unit_request({"op": "vehicle", "odometer_km": odometer_km, "fuel_pct": fuel_pct})

    def drive(self, km: float) -> None:
        """Add `km` to the odometer, the fuel gauge as it is (the car's CAN data)."""
        sensors = self.status()["sensors"]
        self._unit_request(
            {
                "op": "vehicle",
                "odometer_km": (sensors.get("odometer_km") or 0.0) + km,
                "fuel_pct": sensors.get("fuel_pct") or 0.0,
            }
        )

    def _switch(self, name: str, on: bool) -> None:
        assert self.board is not None
        self.board.set_input(name, on)

    def _seen(self, check: Callable[[dict[str, Any]], Any], what: str) -> None:
        wait_for(lambda: check(self.status()), f"the car to see {what}")

    # ---- what the car does ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        assert self.unit is not None
        return self.unit.status()

    @property
    def state(self) -> str:
        return str(self.status()["state"])

    def prompts(self) -> list[str]:
        """Every voice prompt the board played, in order, by ID."""
        assert self.board is not None
        clips = [c for boot in self._boots() for c in self.board.voice_clips(boot)]
        return [PROMPT_OF_CLIP.get(c, f"clip {c}") for c in clips]

    def _boots(self) -> range:
        assert self.board is not None
        return range(1, self.board.boots + 1)

    @property
    def outputs(self) -> dict[str, Any]:
        """The car as a person beside it would see it: from the board's relays and lamps, the
        reader's LED from what the board was told to show."""
        assert self.board is not None
        status = self.status()
        return {
            "state": status["state"],
            "overlay": status["overlay"],
            "doors": self.doors(),
            "immobilised": self.board.output("immobiliser"),
            "hazard_blinks": self.pulses("hazard"),
            "led": status["outputs"]["led"],
            "prompts": self.prompts(),
        }

    def doors(self) -> str:
        """locked / unlocked: whichever relay pulsed last (unknown before either did)."""
        lock, unlock = self._last_rise("lock"), self._last_rise("unlock")
        if lock is None and unlock is None:
            return "unknown"
        return "unlocked" if (unlock or -1.0) > (lock or -1.0) else "locked"

    def _last_rise(self, name: str) -> float | None:
        assert self.board is not None
        rises = [t for boot in self._boots() for t, v in self.board.edges(name, boot) if v]
        return max(rises) if rises else None

    def pulses(self, name: str) -> int:
        """How many times output `name` went on, over every boot of the board."""
        assert self.board is not None
        return sum(self.board.pulses(name, boot) for boot in self._boots())

    def mark(self) -> Mark:
        return Mark(
            self.pulses("unlock"),
            self.pulses("lock"),
            self.pulses("hazard"),
            len(self.prompts()),
            self._taps(),
        )

    def since(self, mark: Mark, settle: float = 0.0) -> dict[str, Any]:
        """What the car did since `mark`: relay pulses, hazard blinks, prompts."""
        if settle:
            time.sleep(settle)
        return {
            "unlocks": self.pulses("unlock") - mark.unlocks,
            "locks": self.pulses("lock") - mark.locks,
            "hazard_blinks": self.pulses("hazard") - mark.hazard,
            "prompts": self.prompts()[mark.prompts :],
        }

    def wait_since(self, mark: Mark, what: str, timeout: float = WAIT, **want: Any) -> None:
        """Wait until `since(mark)` shows at least the counts wanted (unlocks=1, hazard_blinks=2)
        and the prompts wanted (prompts=[...] in that order)."""

        def there() -> bool:
            got = self.since(mark)
            for key, value in want.items():
                if key == "prompts":
                    if not _in_order(value, got["prompts"]):
                        return False
                elif got[key] < value:
                    return False
            return True

        try:
            wait_for(there, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; since the mark: {self.since(mark)}") from None

    def wait_state(self, state: str, timeout: float = WAIT) -> dict[str, Any]:
        status: dict[str, Any] = wait_for(
            lambda: (s := self.status())["state"] == state and s, f"state {state}", timeout
        )
        return status

    # ---- the cloud ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def phone(self, driver: str = "XXY00001002", password: str = DEMO_PASSWORD) -> Phone:
        phone = Phone(self.api_url, driver, password)
        self._phones.append(phone)
        return phone

    @property
    def mails(self) -> Mailbox:
        return self.mailbox

    @property
    def fleet_key(self) -> str:
        return DEMO_FLEET_KEY

    def wait_bookings(self, check: Callable[[list[dict[str, Any]]], Any], what: str) -> None:
        """Wait until the reservations the car holds satisfy `check` (S-SYNC-1)."""
        from firmware.tests.unit_process import read_database

        assert self.unit is not None
        unit = self.unit
        wait_for(
            lambda: check(read_database(unit.database)["bookings"]["reservations"]),
            f"the car to hold {what}",
        )

    def cloud_log(self) -> str:
        try:
            return (self.folder / "cloud.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        except FileNotFoundError:
            return "(no log)"

    # ---- the world around -----------------------------------------------------------------------

    def cut_signal(self) -> None:
        """No mobile signal (an underground garage): the car loses the broker."""
        assert self.relay is not None
        self.relay.cut()
        wait_for(lambda: not self.status().get("cloud", {}).get("connected"), "the car offline")

    def restore_signal(self) -> None:
        assert self.relay is not None
        self.relay.restore()
        self.wait_online()

    def power_cut(self) -> None:
        """The car unit loses power (SIGKILL): whatever it had not saved is gone."""
        assert self.unit is not None
        self.unit.kill()
        self.unit.drop_connection()

    def power_on(self) -> None:
        assert self.unit is not None
        self.unit.start()
        self.unit_synced_clock()

    def unit_synced_clock(self) -> None:
        """After a restart the unit's clock resumes where it stopped; the rig's may be later."""
        self._unit_request({"op": "set_time", "t": self._now})

    def _unit_request(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.unit is not None
        answer = self.unit.request(request)
        if not answer.get("ok"):
            raise RigError(f"the unit refused {request}: {answer.get('error')}")
        return answer

    def logs(self) -> str:
        """The tail of every part's log, for a failing test's report."""
        parts = [("cloud", self.cloud_log())]
        if self.unit is not None:
            parts.append(("unit", self.unit.log_tail(40)))
        if self.board is not None:
            parts.append(("board", self.board.log_tail(20)))
        return "\n".join(f"---- {name} ----\n{text}" for name, text in parts)


def _in_order(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(w == g for g in it) for w in wanted)


@contextlib.contextmanager
def sim_rig(folder: Path, rig: RigFile | None = None, **kwargs: Any) -> Iterator[SimRig]:
    """A started sim rig in `folder`; its parts are stopped on leaving, the folder kept."""
    with SimRig(folder, rig or load_rig("sim"), **kwargs) as started:
        yield started


def clean(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)

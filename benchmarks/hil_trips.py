"""How long a driver waits at the car, through every real part of the sim rig, and how close that
is to what the parts themselves allow. Prints one table; `make bench` runs it.

    python -m benchmarks.hil_trips              # 200 trips (about 3 to 5 minutes on 2 cores)
    python -m benchmarks.hil_trips --trips 20   # a quick run

The rig is `tools.sim.rig.SimRig`: `kagi cloud serve` (API, embedded amqtt broker, sync) on the
rig's clock, the board's firmware under MicroPython, `kagi unit run` with the nfcpy reader on
`udp:`. Every trip is reserved through the API (in batches: a member holds at most 15 open
reservations, C-MAX-1; one car's reservations are an hour apart, C-CAR-1) and driven through: a
card tap, a re-unlock from the phone, a door opened and closed, the key taken, the brake released
and set, the key returned, a tap to end, the forgotten-item window left to lapse (car time moves;
nothing sleeps for car minutes). Timed:

- tap → unlock: the card put in the reader's field (`CardEmulator.presented_at`) → the rising
  edge of the unlock relay on the simulated board (`SimBoard.edges`);
- tap → lock (end): the end tap put in the field → the rising edge of the lock relay;
- phone → unlock: the re-unlock API call sent → the rising edge of the unlock relay (HTTP, the
  cloud, one MQTT hop to the car, the trip core, the board).

Next to each, the floor measured in the same run, interleaved with the trips (so both see the same
machine): the bare round trips of the parts the path crosses, each with nothing behind it —
one emulated-reader poll (nfcpy's udp reader against the emulated card: card presented → the
reader reports it), one serial-link command (`BoardLink` unlock → the board's unlock pin, on a
second simulated board of its own) and, for the phone's path, one broker hop (paho publish →
subscribe through the rig's own broker, the subscriber behind the car's relay as the car is).
A path's floor is the sum of its parts, sample by sample. The guide allows about 10 s for unlock
and lock (SPEC U-START-4, U-END-3).

Times on both sides are CLOCK_MONOTONIC: `time.perf_counter()` (the emulator) and
`time.monotonic()` (the board's edges) are the same clock on Linux; `main` checks it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import platform
import queue
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks._stats import pct
from boards.sim.rig import SimBoard
from cloud.demo import CAR, DRIVER_CARDS
from firmware.board_link import BoardLink, LinkTiming
from firmware.cloud_link import no_delay
from firmware.effects import Unlock
from firmware.inputs import BoardLinkChanged, Input
from firmware.reader_nfc import NfcReader
from protocol import topics
from tools.card_emulator import CardEmulator, EmulatedCard
from tools.rig.phone import next_mark
from tools.rig.processes import free_port
from tools.rig.rigfile import load_rig
from tools.rig.wait import wait_for
from tools.sim.drivers import Hand
from tools.sim.rig import BOARD_SETTINGS, SimRig

ROOT = Path(__file__).resolve().parent.parent
TRIPS = 200
DRIVER = "XXY00001002"  # Bob, a demo driver (`kagi cloud demo`)
GOAL_S = 10.0  # the guide's unlock and lock (SPEC U-START-4, U-END-3)
BATCH = 15  # C-MAX-1: open reservations per member
LENGTH = dt.timedelta(minutes=30)  # C-GRID-1: the shortest reservation
EVERY = dt.timedelta(hours=1)  # LENGTH + C-CAR-1's 30 minutes between reservations on one car
FORGOTTEN = dt.timedelta(minutes=10, seconds=1)  # U-FGT-1's window, and a second to lapse
WAIT = 10.0  # seconds a step may take before the benchmark calls the rig broken
# a tap comes at any moment of the reader's polling cycle (about 60 ms with an empty field: a
# 15 ms sense at 212 and at 424 kbps, then 20 ms idle): a random wait of up to two cycles first
PHASE = 0.12
HOP_USER = "bench-hop"  # a broker account of the benchmark's own, named like a car
FLOOR_CARD = EmulatedCard.plain(bytes.fromhex("0505050505050505"))


class BenchError(RuntimeError):
    """The rig did something a trip does not allow (a refusal, a missing edge)."""


# ---- the rig's parts, watched -------------------------------------------------------------------


class UnitLog:
    """Counts phrases in the unit's log as it grows, reading only what is new."""

    PHRASES = ("card tapped (", "card taken away", ": opened")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.counts = dict.fromkeys(self.PHRASES, 0)

    def count(self, phrase: str) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            for p in self.PHRASES:
                if p.encode() in line:
                    self.counts[p] += 1
        return self.counts[phrase]


def rise_after(board: SimBoard, name: str, t0: float, what: str) -> float:
    """The first rising edge of output `name` after `t0` (monotonic), waiting for it."""

    def first() -> float | None:
        return next((t for t, v in board.edges(name) if v and t > t0), None)

    board.wait_for(lambda: first() is not None, WAIT, what)
    edge = first()
    assert edge is not None
    return edge


# ---- the trips ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trip:
    """One trip's figures, in ms."""

    tap_unlock: float
    phone_unlock: float
    tap_lock: float


class TripDriver:
    """Reserves and drives whole trips on a started rig, with the card in the field of the
    rig's hand (one `CardEmulator` for the whole run: no process per tap)."""

    def __init__(self, rig: SimRig) -> None:
        assert rig.board is not None and rig.unit_process is not None
        assert isinstance(rig.card_presenter, Hand)
        self.rig = rig
        self.board = rig.board
        self.log = UnitLog(rig.unit_process.log_path)
        self.card = EmulatedCard.plain(bytes.fromhex(DRIVER_CARDS[DRIVER]))
        self.phone = rig.phone(DRIVER)
        self._rng = random.Random(11)
        self.emulator = rig.card_presenter.field
        rig.park()  # at the station, with meters (U-END-1, U-END-3)
        wait_for(lambda: self.log.count(": opened") > 0, "the unit's reader to open")
        # the unit locks the doors once its board link is up (U-DATA-1): that pulse is not
        # a trip's
        wait_for(lambda: rig.doors() == "locked", "the doors locked at start-up")

    def close(self) -> None:
        self.emulator.remove()

    def reserve(self, count: int) -> list[dict[str, Any]]:
        """`count` reservations for the coming hours, once the car holds them all."""
        first = next_mark(self.rig.now + dt.timedelta(minutes=30))
        made = [
            self.phone.reserve(CAR, first + i * EVERY, first + i * EVERY + LENGTH)
            for i in range(count)
        ]
        ids = {r["id"] for r in made}
        self.rig.wait_bookings(lambda held: ids <= {r["id"] for r in held}, f"{count} trips")
        return made

    def wait_completed(self, reservation: dict[str, Any]) -> None:
        """Until the cloud has the trip's end (the reservation no longer counts as open)."""
        rid = reservation["id"]
        wait_for(
            lambda: self.phone.reservation(rid)["status"] == "completed",
            f"the cloud to complete reservation {rid}",
        )

    def drive(self, reservation: dict[str, Any]) -> Trip:
        """One whole trip of `reservation`; returns its timings."""
        rig = self.rig
        rid = reservation["id"]
        start = dt.datetime.fromisoformat(reservation["start"])
        if rig.now < start:
            rig.advance(seconds=(start - rig.now).total_seconds())  # U-START-2: the window is open
        rig.wait_state("idle")
        tap_unlock = self.tap_until("unlock")  # U-START-4
        rig.wait_state("unlocked")
        phone_unlock = self.reunlock(rid)  # U-SEC-4
        rig.open_door("driver")
        rig.close_door("driver")
        rig.take_key()  # U-SEC-5
        rig.wait_state("in_use")
        rig.brake(False)
        rig.brake(True)
        rig.return_key()
        tap_lock = self.tap_until("lock")  # U-END-2, U-END-3
        rig.wait_state("forgotten_item_window")
        rig.advance(seconds=FORGOTTEN.total_seconds())  # U-FGT-1: the window lapses
        rig.wait_state("idle")
        return Trip(tap_unlock, phone_unlock, tap_lock)

    def tap_until(self, relay: str) -> float:
        """Present the card until the `relay` relay rises; ms from presentation to the edge."""
        log = self.log
        wait_for(
            lambda: log.count("card taken away") >= log.count("card tapped ("),
            "the unit's reader to let the last card go",
        )
        time.sleep(self._rng.uniform(0.0, PHASE))  # a person's tap: any phase of the polling
        self.emulator.present(self.card)
        presented = self.emulator.presented_at
        assert presented is not None
        try:
            edge = rise_after(self.board, relay, presented, f"the {relay} relay after a tap")
        finally:
            self.emulator.remove()
        return (edge - presented) * 1000

    def reunlock(self, rid: str) -> float:
        """Re-unlock from the phone; ms from the API call to the unlock relay's edge."""
        self.board.wait_output("unlock", False, WAIT)  # the tap's pulse is over: a new edge
        self.phone.reservation(rid)  # logs in again now if the token ran out on the rig's clock
        t0 = time.monotonic()
        answer = self.phone.operate(rid, "reunlock")  # {command_id, ok, code, data}
        if not answer.get("ok"):
            raise BenchError(f"the car refused the phone's reunlock: {answer}")
        edge = rise_after(self.board, "unlock", t0, "the unlock relay after the phone's reunlock")
        return (edge - t0) * 1000


# ---- the floors: each part bare ------------------------------------------------------------------


class ReaderFloor:
    """One emulated-reader poll: a card presented → nfcpy's reader reports it, no unit behind.

    The reader runs in a process of its own, as in the unit (in one process with the emulator
    the two would take turns at the GIL), with the unit's own polling settings. It takes one
    request a line and answers one line: `start`, `stop`, `gone` (once no card is held), `tap`
    (the `time.perf_counter()` at which it reported the next card: CLOCK_MONOTONIC, one clock
    for every process)."""

    def __init__(self, folder: Path) -> None:
        self.url = f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
        self.emulator = CardEmulator(self.url)
        self._rng = random.Random(7)
        with open(folder / "floor-reader.log", "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.hil_trips", "--floor-reader", self.url],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._log = folder / "floor-reader.log"

    def _ask(self, request: str) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(request + "\n")
        self._proc.stdin.flush()
        if not select.select([self._proc.stdout], [], [], WAIT)[0]:
            raise BenchError(f"the floor's reader did not answer {request!r}")
        answer = self._proc.stdout.readline().strip()
        if not answer or answer.startswith("error"):
            tail = self._log.read_text(errors="replace")[-2000:]
            raise BenchError(f"the floor's reader, asked {request!r}: {answer or 'exited'}\n{tail}")
        return answer

    def resume(self) -> None:
        self._ask("start")

    def pause(self) -> None:
        """Stop polling between samples, so it costs the trips nothing."""
        self.emulator.remove()
        self._ask("stop")

    def sample(self) -> float:
        self.emulator.remove()
        self._ask("gone")  # as at the car: the last card has gone, the reader polls an empty field
        time.sleep(self._rng.uniform(0.0, PHASE))  # a random phase of the polling cycle
        self.emulator.present(FLOOR_CARD)
        presented = self.emulator.presented_at
        assert presented is not None
        seen = float(self._ask("tap"))
        return (seen - presented) * 1000

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # end of requests: the reader process stops
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self.emulator.stop()


def floor_reader(url: str) -> int:
    """The floor's reader process (`--floor-reader URL`): see `ReaderFloor`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent stops us
    reader = NfcReader(url)
    taps: queue.Queue[float] = queue.Queue()

    def answer(text: str) -> None:
        print(text, flush=True)

    try:
        for line in sys.stdin:
            request = line.strip()
            if request == "start":
                while not taps.empty():
                    taps.get()
                reader.start(lambda event: taps.put(time.perf_counter()))
                answer("ready" if reader.connected.wait(WAIT) else f"error: {url} did not open")
            elif request == "stop":
                reader.stop()
                answer("stopped")
            elif request == "gone":
                try:
                    wait_for(lambda: reader.card_present is None, "no card on the reader", WAIT)
                    answer("gone")
                except AssertionError as exc:
                    answer(f"error: {exc}")
            elif request == "tap":
                try:
                    answer(repr(taps.get(timeout=WAIT)))
                except queue.Empty:
                    answer("error: no tap reported")
            else:
                answer(f"error: no request {request!r}")
    finally:
        reader.stop()
    return 0


class LinkFloor:
    """One serial-link command: `BoardLink` unlock → the unlock pin of a board of its own."""

    def __init__(self, folder: Path) -> None:
        self.board = SimBoard(folder, "pico", BOARD_SETTINGS)
        self.link = BoardLink(self.board.host_port, LinkTiming())  # the unit's own timing
        up: list[Input] = []
        try:
            self.board.start()
            self.link.start(up.append)
            self.board.wait_for(
                lambda: any(isinstance(e, BoardLinkChanged) and e.up for e in up), WAIT, "link up"
            )
        except BaseException:
            self.close()
            raise

    def sample(self) -> float:
        self.board.wait_output("unlock", False, WAIT)
        t0 = time.monotonic()
        self.link.apply(Unlock())
        return (rise_after(self.board, "unlock", t0, "the floor's unlock pin") - t0) * 1000

    def close(self) -> None:
        self.link.stop()
        self.board.close()


class BrokerFloor:
    """One broker hop: paho publish (QoS 1) → a subscriber gets it, through the rig's broker.
    The publisher talks to the broker as the cloud does, the subscriber through the car's relay
    as the car does; both log in with a broker account of the benchmark's own."""

    def __init__(self, rig: SimRig) -> None:
        assert rig.relay is not None
        password = rig.broker_account(HOP_USER)
        self.ca = rig.broker_ca
        self.topic = topics.topic(HOP_USER, "commands")
        self._got: dict[bytes, float] = {}
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._n = 0
        self.sub = self._client("sub", password, rig.relay.port)
        self.sub.on_connect = lambda c, *_: c.subscribe(self.topic, topics.QOS)
        self.sub.on_subscribe = lambda *_: self._subscribed.set()
        self.sub.on_message = self._message
        self.pub = self._client("pub", password, rig.broker_port)
        try:
            for client in (self.sub, self.pub):
                client.loop_start()
            if not self._subscribed.wait(WAIT):
                raise BenchError("the broker hop's subscriber was never subscribed")
            wait_for(self.pub.is_connected, "the broker hop's publisher to connect")
        except BaseException:
            self.close()
            raise

    def _client(self, role: str, password: str, port: int) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{HOP_USER}-{role}")
        client.username_pw_set(HOP_USER, password)
        if self.ca is not None:
            client.tls_set(ca_certs=str(self.ca))
        client.on_socket_open = no_delay
        client.connect_async("127.0.0.1", port, keepalive=30)
        return client

    def _message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        with self._cond:
            self._got[bytes(message.payload)] = now
            self._cond.notify_all()

    def sample(self) -> float:
        self._n += 1
        payload = str(self._n).encode()
        t0 = time.monotonic()
        self.pub.publish(self.topic, payload, qos=topics.QOS)
        with self._cond:
            if not self._cond.wait_for(lambda: payload in self._got, WAIT):
                raise BenchError("a message through the broker never arrived")
            return (self._got.pop(payload) - t0) * 1000

    def close(self) -> None:
        for client in (self.sub, self.pub):
            client.disconnect()
            client.loop_stop()


@dataclass
class Floors:
    reader: list[float] = field(default_factory=list)
    link: list[float] = field(default_factory=list)
    broker: list[float] = field(default_factory=list)


# ---- the run -----------------------------------------------------------------------------------


@dataclass
class Results:
    trips: list[Trip] = field(default_factory=list)
    floors: Floors = field(default_factory=Floors)
    seconds: float = 0.0
    load: float = 0.0  # the 1-minute load average when the run began
    reservations: list[str] = field(default_factory=list)  # the trips' reservation IDs

    def path(self, name: str) -> list[float]:
        return [getattr(t, name) for t in self.trips]

    def floor(self, *parts: str) -> list[float]:
        """A path's floor, sample by sample: the sum of its parts' i-th samples."""
        series = [getattr(self.floors, p) for p in parts]
        return [sum(values) for values in zip(*series, strict=False)]


PATHS = (  # name, Trip field, the floor parts it crosses
    ("tap -> unlock", "tap_unlock", ("reader", "link")),
    ("tap -> lock (end)", "tap_lock", ("reader", "link")),
    ("phone -> unlock", "phone_unlock", ("broker", "link")),
)
PARTS = {  # field: (letter, row name, what was timed)
    "reader": (
        "R",
        "reader poll",
        "a card presented to the emulated card -> nfcpy's udp reader reports it (no unit)",
    ),
    "link": (
        "L",
        "link command",
        "BoardLink unlock -> the unlock pin of a simulated board of its own (no trip core)",
    ),
    "broker": (
        "B",
        "broker hop",
        "paho publish, QoS 1, to the rig's broker -> a subscriber behind the car's relay",
    ),
}


def measure(rig: SimRig, trips: int, progress: Callable[[str], None] | None = None) -> Results:
    """Drive `trips` whole trips on a started rig and sample each floor part as many times,
    batch by batch (so trips and floors see the same machine)."""
    results = Results(load=os.getloadavg()[0])
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        driver = TripDriver(rig)
        stack.callback(driver.close)
        reader = ReaderFloor(rig.folder)
        stack.callback(reader.close)
        link = LinkFloor(rig.folder / "floor-board")
        stack.callback(link.close)
        broker = BrokerFloor(rig)
        stack.callback(broker.close)
        batch: list[dict[str, Any]] = []
        while len(results.trips) < trips:
            if batch:
                driver.wait_completed(batch[-1])  # C-MAX-1: the batch no longer counts as open
            batch = driver.reserve(min(BATCH, trips - len(results.trips)))
            for reservation in batch:
                results.trips.append(driver.drive(reservation))
                results.reservations.append(reservation["id"])
            reader.resume()
            try:
                for _ in batch:
                    results.floors.reader.append(reader.sample())
                    results.floors.link.append(link.sample())
                    results.floors.broker.append(broker.sample())
            finally:
                reader.pause()
            if progress is not None:
                progress(f"{len(results.trips)}/{trips} trips, {time.monotonic() - began:.0f} s")
    results.seconds = time.monotonic() - began
    return results


def table(results: Results) -> str:
    """The one table: each path's p50 and p99 next to its floor, what is left above the floor,
    and the guide; then the floor parts themselves."""
    floors = results.floors
    head = (
        f"{'':<20}{'p50 ms':>8}{'p99 ms':>8}{'floor':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'path-floor p50':>16}{'p99':>7}{'guide':>7}{'p99/guide':>10}"
    )
    rule = "-" * len(head)
    lines = [
        f"whole trips on the sim rig: {len(results.trips)} trips ({2 * len(results.trips)} taps, "
        f"{len(results.trips)} phone re-unlocks), {len(floors.reader)} samples of each floor "
        f"part (interleaved with the trips), {results.seconds:.0f} s",
        f"machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, load average {results.load:.2f} at the start",
        head,
        rule,
    ]
    for name, attr, parts in PATHS:
        values, floor = results.path(attr), results.floor(*parts)
        p50, p99, f50, f99 = pct(values, 0.5), pct(values, 0.99), pct(floor, 0.5), pct(floor, 0.99)
        sum_of = "+".join(PARTS[p][0] for p in parts)
        lines.append(
            f"{name:<20}{p50:>8.1f}{p99:>8.1f}{sum_of:>7}{f50:>8.1f}{f99:>8.1f}"
            f"{p50 - f50:>16.1f}{p99 - f99:>7.1f}{f'{GOAL_S:g} s':>7}{p99 / (GOAL_S * 1e3):>10.2%}"
        )
    lines.append(rule)
    for attr, (letter, name, _) in PARTS.items():
        values = getattr(floors, attr)
        lines.append(
            f"{letter + ' ' + name:<20}{pct(values, 0.5):>8.1f}{pct(values, 0.99):>8.1f}"
            f"{'max':>7}{max(values):>8.1f}"
        )
    lines.append(rule)
    lines += [f"{letter}: {what}" for letter, _, what in PARTS.values()]
    return "\n".join(lines)


def same_clock() -> None:
    """The emulator stamps with perf_counter, the board's edges with monotonic: one clock."""
    a, b = time.get_clock_info("perf_counter"), time.get_clock_info("monotonic")
    if a.implementation != b.implementation:
        raise SystemExit(
            f"benchmarks.hil_trips: perf_counter ({a.implementation}) and monotonic "
            f"({b.implementation}) differ here; the tap figures would mix two clocks"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hil_trips", description=__doc__)
    parser.add_argument("--trips", type=int, default=TRIPS, help=f"trips (default {TRIPS})")
    parser.add_argument("--floor-reader", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_reader:
        return floor_reader(args.floor_reader)
    if args.trips < 1:
        parser.error("--trips: must be at least 1")
    same_clock()
    logging.basicConfig(level=logging.ERROR)  # the parts' own chatter stays in their logs

    interrupted = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if not interrupted.is_set():  # once: the way out must not be interrupted itself
            interrupted.set()
            raise KeyboardInterrupt

    # Ctrl-C (also when started in the background, where SIGINT comes ignored) and SIGTERM:
    # every part is stopped on the way out
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)

    def progress(text: str) -> None:
        print(f"hil_trips: {text}", file=sys.stderr, flush=True)

    try:
        with (
            tempfile.TemporaryDirectory(prefix="kagi-bench-hil-") as tmp,
            SimRig(Path(tmp) / "rig", load_rig("sim")) as rig,
        ):
            progress(f"rig up; {args.trips} trips")
            results = measure(rig, args.trips, progress)
    except BaseException:
        if not interrupted.is_set():
            raise
        # Ctrl-C reaches the rig's processes too: one of them may have ended first
        print("hil_trips: interrupted; every part it started is stopped", file=sys.stderr)
        return 130
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

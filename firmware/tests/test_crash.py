# SPEC U-DATA-1
"""The power-cut test: a real `kagi unit run` is SIGKILLed at random points of a scripted day.

The script is two trips over the control socket (taps, doors, key, engine, bookings, remote
commands and clock moves through every deadline). An in-process model — the same runner on a
memory store — runs the script beside the process. After every kill the test reads the SQLite
database read-only and checks that it holds exactly the state after the last answered step or
after the step in flight (a step is atomic), with the same deadlines, bookings, applied commands
and outbox: sequence numbers 1..n, each event once, ids unchanged across restarts, nothing lost.
Then it restarts the unit on the same database and checks, before sending any input, that the
car shows the outputs the restored state implies (doors, immobiliser, reader), and goes on.

Seeded (KAGI_CRASH_SEED overrides): a failure names its seed, pass, kill, step and how far into
the step the kill fell. Whether an in-flight step had committed depends on timing, so a rerun
with the same seed takes the same decisions but may not land each kill on the same side.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.clock import ManualClock
from firmware.config import TripConfig
from firmware.control import INPUTS
from firmware.fakes import FakeBody, FakeCloudLink, FakeReader, MemoryStore
from firmware.inputs import ClockMoved, Input
from firmware.runner import Runner
from firmware.tests.unit_process import CARD_KEY, UnitProcess, read_database
from protocol.cards import card_hash

SEED = int(os.environ.get("KAGI_CRASH_SEED", "20261122"))  # set it to explore other schedules
MIN_KILLS = 60  # kill points during the script, over as many passes as that takes
STARTUP_KILL_RATE = 0.15  # a share of restarts is itself cut short, during restore
MAX_IN_FLIGHT_DELAY = 0.004  # s; a step takes ~1-4 ms in the unit

KEY = bytes.fromhex(CARD_KEY)
TRIP = TripConfig()  # the unit's config file sets no trip tables: the defaults
MIN = 60
HOUR = 3600

ALICE = "0101010101010101"  # d-alice: r1 (trip 1, by card) and r2 (trip 2, remote)
BOB = "0202020202020202"  # d-bob: a reservation elsewhere in time, so his tap is denied
SPARE = "0303030303030303"  # registered to alice in the car (U-CARD-2)
ALICE_ID, BOB_ID = "XXY00001001", "XXY00001002"

T0 = 4_000_000_500.0  # in the future of any clock this runs on (the manual clock never goes back)
S1, E1 = T0 + 30 * MIN, T0 + 30 * MIN + 2 * HOUR
E1_EXTENDED = E1 + 15 * MIN
S2, E2 = E1_EXTENDED + 2 * HOUR, E1_EXTENDED + 3 * HOUR
BOB_START = E2 + 2 * HOUR


def bookings(version: int, r1_end: float) -> dict[str, Any]:
    def card(idm: str) -> str:
        return card_hash(KEY, bytes.fromhex(idm))

    return {
        "version": version,
        "reservations": [
            {"id": "r1", "driver_id": ALICE_ID, "start": S1, "end": r1_end},
            {"id": "r2", "driver_id": ALICE_ID, "start": S2, "end": E2},
            {"id": "r3", "driver_id": BOB_ID, "start": BOB_START, "end": BOB_START + HOUR},
        ],
        "drivers": [
            {"id": ALICE_ID, "licence_expiry": "2199-12-31", "cards": [card(ALICE)]},
            {"id": BOB_ID, "licence_expiry": "2199-12-31", "cards": [card(BOB)]},
        ],
    }


def tap(idm: str) -> dict[str, Any]:
    return {"op": "tap", "idm": idm}


def door(name: str, is_open: bool) -> dict[str, Any]:
    return {"op": "door", "door": name, "open": is_open}


def key(present: bool) -> dict[str, Any]:
    return {"op": "key", "present": present, "position": "return" if present else "lend"}


def engine(running: bool) -> dict[str, Any]:
    return {"op": "engine", "running": running}


def command(cid: str, name: str, **args: Any) -> dict[str, Any]:
    return {"op": "command", "id": cid, "name": name, "args": args}


def at(t: float) -> dict[str, Any]:
    return {"op": "set_time", "t": t}


def advance(seconds: float) -> dict[str, Any]:
    return {"op": "advance", "seconds": seconds}


# (what the step is, the request); every deadline of SPEC §1 falls due at least once
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("clock to T0", at(T0)),
    ("bookings v1", {"op": "bookings", "bookings": bookings(1, E1)}),
    ("alice taps too early: denied", tap(ALICE)),
    ("reader window opens (start-14)", at(S1 - 14 * MIN)),
    ("register a card for r1", command("c-reg", "register_card", reservation_id="r1")),
    ("spare card tapped: registered", tap(SPARE)),
    ("bob taps: denied", tap(BOB)),
    ("alice taps: start", tap(ALICE)),
    ("30 s pass", advance(30)),
    ("door timer: security lock", advance(30)),
    ("alice taps: re-unlock", tap(ALICE)),
    ("driver door opens", door("driver", True)),
    ("driver door closes", door("driver", False)),
    ("2 min pass", advance(2 * MIN)),
    ("key taken", key(False)),
    ("engine on", engine(True)),
    ("10 min drive", advance(10 * MIN)),
    ("position", {"op": "position", "lat": 35.6812, "lon": 139.7671}),
    ("vehicle data", {"op": "vehicle", "odometer_km": 1234.5, "fuel_pct": 80}),
    ("remote re-unlock while in use", command("c-ru1", "reunlock")),
    ("register again, time out", command("c-reg2", "register_card", reservation_id="r1")),
    ("registration times out", advance(2 * MIN)),
    ("engine off", engine(False)),
    ("key returned mid-trip", key(True)),
    ("5 min pass", advance(5 * MIN)),
    ("key taken again (return timer off)", key(False)),
    ("key returned again", key(True)),
    ("return-key warning", advance(9 * MIN)),
    ("return-key timer: security lock", advance(MIN)),
    ("remote re-unlock", command("c-ru2", "reunlock", reservation_id="r1")),
    ("passenger door opens", door("passenger", True)),
    ("passenger door closes", door("passenger", False)),
    ("key taken", key(False)),
    ("engine on", engine(True)),
    ("extension to end+15", {"op": "bookings", "bookings": bookings(2, E1_EXTENDED)}),
    ("first reminder", at(E1_EXTENDED - 10 * MIN)),
    ("second reminder", advance(5 * MIN)),
    ("overtime", at(E1_EXTENDED + 2 * MIN)),
    ("engine off", engine(False)),
    ("key returned", key(True)),
    ("parking brake off", {"op": "brake", "on": False}),
    ("alice taps: end refused (brake)", tap(ALICE)),
    ("parking brake on", {"op": "brake", "on": True}),
    ("lights on", {"op": "lights", "on": True}),
    ("alice taps: end (lights warned)", tap(ALICE)),
    ("alice taps: forgotten-item unlock", tap(ALICE)),
    ("rear door opens", door("rear_left", True)),
    ("alice taps: lock refused (door open)", tap(ALICE)),
    ("rear door closes", door("rear_left", False)),
    ("alice taps: forgotten-item lock", tap(ALICE)),
    ("lights off", {"op": "lights", "on": False}),
    ("r2 opens for a remote start", at(S2 - 10 * MIN)),
    ("remote start r2", command("c-start", "start", reservation_id="r2")),
    ("driver door opens", door("driver", True)),
    ("driver door closes", door("driver", False)),
    ("engine on with the key in the box", engine(True)),
    ("key warning", advance(9 * MIN)),
    ("key timer held while the engine runs", advance(MIN)),
    ("engine off: the held lock waits 1 min", engine(False)),
    ("key timer: security lock", advance(MIN)),
    ("remote end from security lock", command("c-end", "end", reservation_id="r2")),
    ("remote forgotten-item unlock", command("c-fu", "forgotten_unlock")),
    ("tailgate opens", door("tailgate", True)),
    ("window runs out with the tailgate open", advance(10 * MIN)),
    ("tailgate closes: locked", door("tailgate", False)),
    ("locate", command("c-loc", "locate")),
    ("bob's reader window", at(BOB_START - 14 * MIN)),
]


# ---- the model: the same runner in memory, restartable like the process ----------------------


def to_input(clock: ManualClock, request: dict[str, Any]) -> Input:
    """What the control socket makes of a request (firmware/control.py)."""
    op = request["op"]
    if op == "advance":
        clock.advance(float(request["seconds"]))
        return ClockMoved()
    if op == "set_time":
        clock.set(float(request["t"]))
        return ClockMoved()
    return INPUTS[op](request)


def copy_store(store: MemoryStore) -> MemoryStore:
    new = MemoryStore()
    new.snapshot = copy.deepcopy(store.snapshot)
    new.bookings = store.bookings  # frozen
    new.outbox = list(store.outbox)  # frozen events
    new.commands = set(store.commands)
    new.next_seq = store.next_seq
    return new


class Model:
    """A unit in memory: it starts (restores) on a copy of `store` at the clock it saved."""

    def __init__(self, store: MemoryStore, now: float | None = None) -> None:
        self.store = copy_store(store)
        if now is None:
            assert store.snapshot is not None
            now = store.snapshot["data"]["last_time"]
            assert now is not None
        self.body = FakeBody()
        self.clock = ManualClock(now)
        self.runner = Runner(
            TRIP, KEY, self.store, self.body, FakeReader(), FakeCloudLink(), self.clock
        )
        self.runner.start()

    def step(self, request: dict[str, Any]) -> None:
        self.runner.step(to_input(self.clock, request))

    def saved(self) -> dict[str, Any]:
        return saved(self.store)


def saved(s: MemoryStore) -> dict[str, Any]:
    """What a memory store holds, shaped as read_database() reads it."""
    return {
        "snapshot": json.loads(json.dumps(s.snapshot)),
        "next_seq": s.next_seq,
        "bookings": normal_bookings(s.bookings.to_dict()),
        "outbox": [
            {"seq": e.seq, "type": e.type, "at": e.at, "data": json.loads(json.dumps(e.data))}
            for e in s.outbox
        ],
        "commands": set(s.commands),
    }


def normal_bookings(b: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": b["version"],
        "reservations": sorted(b["reservations"], key=lambda r: (r["start"], r["id"])),
        "drivers": [
            {**d, "cards": sorted(d["cards"])} for d in sorted(b["drivers"], key=lambda d: d["id"])
        ],
    }


def disk_view(disk: dict[str, Any]) -> dict[str, Any]:
    """The database shaped like Model.saved(): event ids and result pointers left out."""
    return {
        "snapshot": disk["snapshot"],
        "next_seq": disk["next_seq"],
        "bookings": normal_bookings(disk["bookings"]),
        "outbox": [{k: e[k] for k in ("seq", "type", "at", "data")} for e in disk["outbox"]],
        "commands": set(disk["commands"]),
    }


def without_outputs(state: dict[str, Any]) -> dict[str, Any]:
    """A restart forgets what was commanded (outputs are re-derived): compare the rest."""
    out = copy.deepcopy(state)
    if out["snapshot"] is not None:
        out["snapshot"]["data"].pop("outputs")
    return out


def differences(got: dict[str, Any], want: dict[str, Any]) -> str:
    """A short account of where two saved states differ."""
    lines: list[str] = []
    for part in ("snapshot", "next_seq", "bookings", "commands"):
        if got[part] != want[part]:
            if part == "snapshot" and got[part] and want[part]:
                g, w = got[part], want[part]
                for k in ("state", "overlay"):
                    if g[k] != w[k]:
                        lines.append(f"  {k}: {g[k]!r} != {w[k]!r}")
                for k in sorted(set(g["data"]) | set(w["data"])):
                    if g["data"].get(k) != w["data"].get(k):
                        lines.append(
                            f"  data.{k}: {g['data'].get(k)!r}\n    != {w['data'].get(k)!r}"
                        )
            else:
                lines.append(f"  {part}: {got[part]!r}\n    != {want[part]!r}")
    go, wo = got["outbox"], want["outbox"]
    if go != wo:
        lines.append(f"  outbox: {len(go)} events, expected {len(wo)}")
        for i in range(max(len(go), len(wo))):
            g = go[i] if i < len(go) else None
            w = wo[i] if i < len(wo) else None
            if g != w:
                lines.append(f"    first difference at #{i + 1}: {g!r}\n      != {w!r}")
                break
    return "\n".join(lines) or "  (no difference)"


# ---- what the car must show after a restart, from the rule alone --------------------------------


def implied_car(status: dict[str, Any]) -> tuple[str, bool | None]:
    """U-DATA-1 with SPEC §1 States, U-USE-1, X-SAFE-1: the doors and immobiliser a restored
    unit must have set before it takes any input."""
    state, trip, engine_on = status["state"], status["trip"], status["sensors"]["engine"]
    if state in ("in_use", "returning"):
        return "unknown", False  # the doors are the driver's business (U-USE-1): not touched
    if state == "unlocked":
        doors = "unlocked"
    elif state == "forgotten_item_window":
        doors = "unlocked" if trip["forgotten_open"] else "locked"
    else:  # idle, security_locked
        doors = "locked"
    if engine_on:  # X-SAFE-1: a lock and an immobiliser-on wait for the engine to stop
        return ("unknown" if doors == "locked" else doors), None
    return doors, True


# ---- the test -----------------------------------------------------------------------------------


@pytest.fixture
def units() -> Iterator[list[UnitProcess]]:
    started: list[UnitProcess] = []
    yield started
    for unit in started:
        unit.close()


def reference_run(now0: float) -> list[dict[str, Any]]:
    """The uninterrupted run: what the unit holds after 0, 1, … len(SCRIPT) steps."""
    model = Model(MemoryStore(), now0)
    states = [model.saved()]
    for _, request in SCRIPT:
        model.step(request)
        states.append(model.saved())
    return states


class Pass:
    """One run of the script on a fresh database, with kills at random points."""

    def __init__(self, n: int, folder: Path, rng: random.Random, units: list[UnitProcess]) -> None:
        self.n = n
        self.rng = rng
        self.unit = UnitProcess(folder)
        units.append(self.unit)
        self.kills = 0
        self.startup_kills = 0
        self.in_flight_committed = 0
        self.in_flight_lost = 0
        self.event_ids: dict[int, str] = {}  # seq -> id, as first seen: an event keeps its id

    def where(self, pos: int, extra: str = "") -> str:
        label = SCRIPT[pos][0] if pos < len(SCRIPT) else "end of script"
        return f"seed {SEED} pass {self.n} kill {self.kills} at step {pos} ({label}){extra}"

    def check_disk(
        self, disk: dict[str, Any], want: dict[str, Any], full: dict[str, Any], where: str
    ) -> None:
        """The database equals the model's store, and (outputs aside) the uninterrupted run."""
        got = disk_view(disk)
        assert got == want, f"{where}: the database is not the expected state\n" + differences(
            got, want
        )
        assert without_outputs(got) == without_outputs(full), (
            f"{where}: the database differs from the uninterrupted run\n"
            + differences(without_outputs(got), without_outputs(full))
        )
        outbox = disk["outbox"]
        seqs = [e["seq"] for e in outbox]
        assert seqs == list(range(1, len(outbox) + 1)), f"{where}: outbox seq not 1..n: {seqs}"
        assert disk["next_seq"] == len(outbox) + 1, f"{where}: next_seq {disk['next_seq']}"
        ids = [e["id"] for e in outbox]
        assert len(set(ids)) == len(ids), f"{where}: duplicate event ids in the outbox"
        for e in outbox:
            first = self.event_ids.setdefault(e["seq"], e["id"])
            assert first == e["id"], f"{where}: event #{e['seq']} changed id ({first} -> {e['id']})"
        by_seq = {e["seq"]: e for e in outbox}
        for cid, result_seq in disk["commands"].items():
            result = by_seq.get(result_seq)
            assert result is not None and result["type"] == "command_result", (
                f"{where}: command {cid} points at #{result_seq}, not its result"
            )
            assert result["data"]["command_id"] == cid, f"{where}: command {cid} result mismatch"
        results = [e["data"]["command_id"] for e in outbox if e["type"] == "command_result"]
        assert len(results) == len(set(results)), f"{where}: a command answered twice: {results}"

    def check_restored(self, model: Model, where: str) -> None:
        """Right after the restart, before any input: the state and the outputs it implies."""
        status = self.unit.status()
        want = model.store.snapshot
        assert want is not None
        for field in ("state", "overlay"):
            assert status[field] == want[field], f"{where}: restored {field} {status[field]!r}"
        for field in ("deadlines", "trip", "sensors", "registration", "consumed", "last_time"):
            assert status[field] == want["data"][field], (
                f"{where}: restored {field} {status[field]!r}\n  != {want['data'][field]!r}"
            )
        assert status["outputs"] == want["data"]["outputs"], f"{where}: outputs {status['outputs']}"
        assert status["now"] == want["data"]["last_time"], f"{where}: the clock moved on restart"
        assert status["outbox"] == {
            "pending": len(model.store.outbox),
            "last_seq": model.store.next_seq - 1,
        }, f"{where}: outbox {status['outbox']}"
        car = status["car"]
        doors, immobilised = implied_car(status)
        assert (car["doors"], car["immobilised"]) == (doors, immobilised), (
            f"{where}: in {status['state']} the restarted car shows doors {car['doors']!r}, "
            f"immobilised {car['immobilised']!r}; the state implies {doors!r}, {immobilised!r}"
        )
        assert car["led"] == (status["outputs"]["led"] or "dark"), f"{where}: reader {car['led']}"
        m = model.body.car
        assert (car["doors"], car["immobilised"], car["led"]) == (
            m.doors,
            m.immobilised,
            m.led,
        ), f"{where}: the car differs from the model's {m}"

    def restart(self, base: MemoryStore, pos: int) -> Model:
        """Start the unit again on its database (sometimes cutting the restore short)."""
        model = Model(base)
        while self.rng.random() < STARTUP_KILL_RATE:
            delay = self.rng.uniform(0.0, 0.4)
            self.unit.spawn()
            time.sleep(delay)
            self.unit.kill()
            self.startup_kills += 1
            where = self.where(pos, f", start-up kill after {delay:.3f} s")
            got = disk_view(read_database(self.unit.database))
            before = saved(base)
            assert got in (before, model.saved()), (
                f"{where}: the database is neither the saved nor the restored state\n"
                + differences(got, model.saved())
            )
        self.unit.start()
        return model

    def run(self) -> None:
        unit, rng = self.unit, self.rng
        unit.start()
        now0 = unit.status()["now"]
        full = reference_run(now0)
        model = Model(MemoryStore(), now0)
        pos = 0
        next_kill = rng.randint(0, 2)
        while pos < len(SCRIPT):
            request = SCRIPT[pos][1]
            if pos < next_kill:
                answer = unit.request(request)
                assert answer["ok"], f"{self.where(pos)}: refused: {answer}"
                model.step(request)
                pos += 1
                continue
            # a kill point: after the reply, or while the step is in flight
            self.kills += 1
            acked = rng.random() < 0.3
            delay = 0.0 if acked else rng.choice([0.0, rng.uniform(0.0, MAX_IN_FLIGHT_DELAY)])
            unit.send(request)
            reply = unit.reply() if acked else None
            if delay:
                time.sleep(delay)
            unit.kill()
            if reply is None:
                reply = unit.leftover_reply()
            unit.drop_connection()
            mode = "after the reply" if acked else f"{delay * 1000:.2f} ms into the step"
            where = self.where(pos, f", {mode}")
            before = copy_store(model.store)
            model.step(request)
            disk = read_database(unit.database)
            got = disk_view(disk)
            old, new = saved(before), model.saved()
            if new == old:
                committed = True  # the step left no trace: either reading is the same
            elif got == new:
                committed = True
            elif got == old:
                committed = False
            else:
                nearest = new if got["outbox"] == new["outbox"] else old
                pytest.fail(
                    f"{where}: the database is neither the state before nor after the step\n"
                    + differences(got, nearest)
                )
            if reply is not None:
                assert reply.get("ok"), f"{where}: refused: {reply}"
                assert committed, f"{where}: answered but not committed"
            if not acked:
                if committed:
                    self.in_flight_committed += 1
                else:
                    self.in_flight_lost += 1
            k = pos + 1 if committed else pos
            base = model.store if committed else before
            self.check_disk(disk, saved(base), full[k], where)
            model = self.restart(base, pos)
            self.check_restored(model, where)
            if committed and request["op"] == "command":
                # the cloud never heard back and sends the command again: applied once only
                again = unit.request(request)
                assert again == {"ok": True, "effects": []}, f"{where}: command re-applied {again}"
                assert unit.status()["outbox"]["last_seq"] == model.store.next_seq - 1
            pos = k
            next_kill = pos + rng.randint(0, 2)
        # the end of the script: one more power cut, then the complete record
        self.kills += 1
        unit.kill()
        unit.drop_connection()
        where = self.where(pos, ", after the last step")
        disk = read_database(unit.database)
        self.check_disk(disk, model.saved(), full[-1], where)
        model = self.restart(model.store, pos)
        self.check_restored(model, where)
        final = disk_view(read_database(unit.database))
        # idle at the end: even the outputs are the uninterrupted run's again
        assert final == full[-1], f"{where}: the final state is not the uninterrupted run's\n" + (
            differences(final, full[-1])
        )
        unit.close()


@pytest.mark.slow
def test_sigkill_at_random_points_of_a_trip_loses_nothing(
    tmp_path: Path, units: list[UnitProcess]
) -> None:
    # SPEC U-DATA-1
    rng = random.Random(SEED)
    passes: list[Pass] = []
    t = time.monotonic()
    while sum(p.kills for p in passes) < MIN_KILLS:
        p = Pass(len(passes), tmp_path / f"pass{len(passes)}", random.Random(rng.random()), units)
        passes.append(p)
        p.run()
    kills = sum(p.kills for p in passes)
    print(
        f"\n{kills} kills in {len(passes)} passes of {len(SCRIPT)} steps "
        f"(+{sum(p.startup_kills for p in passes)} during restore); in flight: "
        f"{sum(p.in_flight_committed for p in passes)} committed, "
        f"{sum(p.in_flight_lost for p in passes)} not; {time.monotonic() - t:.1f} s"
    )
    assert kills >= 50


@pytest.mark.slow
def test_sigkill_during_the_very_first_start_leaves_a_unit_that_starts(
    tmp_path: Path, units: list[UnitProcess]
) -> None:
    # SPEC U-DATA-1: a power cut at any moment, the first start of a new unit included
    for attempt in range(8):
        unit = UnitProcess(tmp_path / f"first{attempt}")
        units.append(unit)
        unit.spawn()
        deadline = time.monotonic() + 10
        while True:  # cut the power as soon as the database file has its first bytes
            try:
                if unit.database.stat().st_size > 0:
                    break
            except FileNotFoundError:
                pass
            assert time.monotonic() < deadline, f"no database after 10 s:\n{unit.log_tail()}"
        unit.kill()
        unit.start()  # UnitDied (with its log) if it refuses the database it left
        status = unit.status()
        assert (status["state"], status["outbox"]) == ("idle", {"pending": 0, "last_seq": 0})
        unit.close()

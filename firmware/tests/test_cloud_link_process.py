"""A real `kagi unit run` with `cloud = "mqtt://…"` against a real Mosquitto.

The first test is the whole path a reservation takes: the cloud publishes a signed snapshot, the
unit process has it within a second, a tap on its control socket unlocks, and the cloud sees the
events, the state and the presence (the last will when the process is SIGKILLed).

The second is the power-cut test of the link: the unit is SIGKILLed at random points while it
publishes (and while it restarts and sends its backlog), the broker (Mosquitto with persistence)
is SIGKILLed while it holds the events queued for the cloud, and the cloud's commands keep
coming. At the end every event the unit ever made (sequence 1..n, read from its database) has
reached the cloud's persistent session, each command has exactly one result, and nothing came
twice under two ids; repeats of one id may come and are counted (the cloud drops them by id).
Seeded: KAGI_CLOUD_CRASH_SEED overrides.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.mosquitto import Mosquitto
from firmware.tests.cloud_side import (
    CARD_KEY,
    CLOUD_PUBLIC,
    BrokerLike,
    CloudClient,
    broker,
    car_url,
    first_arrivals,
    wait_for,
)
from firmware.tests.unit_process import UnitDied, UnitProcess, read_database
from protocol.cards import card_hash

CAR = "car-001"
ALICE = "0101010101010101"
ALICE_ID = "XXY00001001"
SEED = int(os.environ.get("KAGI_CLOUD_CRASH_SEED", "20261122"))
MIN_KILLS = 50


def write_config(folder: Path, b: BrokerLike) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "unit.toml"
    path.write_text(
        "[unit]\n"
        f'car_id = "{CAR}"\n'
        f'card_key = "{CARD_KEY.hex()}"\n'
        'database = "unit.db"\n'
        'reader = "sim:"\n'
        'board = "sim:"\n'
        f'cloud = "{car_url(b, CAR)}"\n'
        f'cloud_public_key = "{CLOUD_PUBLIC}"\n'
        'cloud_reconnect_max = "1s"\n'
        'cloud_hold = "1s"\n'
        'clock = "manual"\n'
        'control = "control.sock"\n',
        encoding="utf-8",
    )
    return path


def snapshot_for(now: float, version: int) -> dict[str, Any]:
    """Alice's reservation from five minutes from now: her card may start it at once."""
    return {
        "version": version,
        "reservations": [
            {"id": "r1", "driver_id": ALICE_ID, "start": now + 300, "end": now + 7500}
        ],
        "drivers": [
            {
                "id": ALICE_ID,
                "licence_expiry": "2099-12-31",
                "cards": [card_hash(CARD_KEY, bytes.fromhex(ALICE))],
            }
        ],
    }


@pytest.fixture
def unit(tmp_path: Path) -> Iterator[UnitProcess]:
    process = UnitProcess(tmp_path / "unit")
    yield process
    process.close()


def cloud_status(u: UnitProcess) -> dict[str, Any]:
    status: dict[str, Any] = u.status()["cloud"]
    return status


def test_a_unit_process_takes_a_snapshot_from_the_cloud_and_opens_on_a_tap(tmp_path, unit):
    # SPEC S-SYNC-1, U-START-4, S-SYNC-2, S-SYNC-4 with the real `kagi unit run`
    with broker((CAR,)) as b, CloudClient(b) as cloud:
        write_config(unit.folder, b)
        unit.start()
        wait_for(lambda: cloud_status(unit)["connected"], what="the unit connects")
        now = unit.status()["now"]

        t0 = time.monotonic()
        cloud.snapshot(CAR, snapshot_for(now, 1), now)
        wait_for(lambda: unit.status()["bookings_version"] == 1, 1.0, "the snapshot, in 1 s")
        took = time.monotonic() - t0

        reply = unit.request({"op": "tap", "idm": ALICE})
        assert reply["ok"], reply
        assert {"effect": "Unlock"} in [{"effect": e["effect"]} for e in reply["effects"]]
        assert unit.status()["state"] == "unlocked"
        started = wait_for(lambda: cloud.events_of(CAR, "trip_started"), what="trip_started")
        assert started[0]["data"] | {"at": 0} == started[0]["data"] | {
            "reservation_id": "r1",
            "driver_id": ALICE_ID,
            "from": "idle",
            "to": "unlocked",
            "at": 0,
        }
        wait_for(lambda: cloud.states.get(CAR, {}).get("state", {}).get("trip_state") == "unlocked")
        assert cloud.online[CAR]["online"] is True

        unit.kill()  # the unit vanishes: its last will says so
        wait_for(lambda: cloud.online[CAR]["online"] is False, what="the last will")
        unit.drop_connection()
        unit.start()  # back, with its trip
        wait_for(lambda: cloud.online[CAR]["online"] is True, what="online again")
        assert unit.status()["state"] == "unlocked"
    assert took < 1.0


# ---- SIGKILL at random points --------------------------------------------------------------------


def persistent_broker() -> Mosquitto:
    """Mosquitto with persistence, saving on every change: it acknowledges a publish before it
    saves it, so with a timed autosave a kill can lose a whole second of acknowledged messages
    (the link sends those again, but only while it lives itself)."""
    b = broker((CAR,), persistence=True)
    assert isinstance(b, Mosquitto)
    text = b.config.read_text()
    b.config.write_text(text + "autosave_on_changes true\n")
    return b


class Crash:
    def __init__(self, unit: UnitProcess, b: Mosquitto, cloud: CloudClient, rnd: random.Random):
        self.unit, self.broker, self.cloud, self.rnd = unit, b, cloud, rnd
        self.unit_kills = self.startup_kills = self.broker_kills = 0
        self.local: dict[str, bool] = {}  # control-socket command id -> its reply came back
        self.remote: list[str] = []  # command ids the cloud published
        self.sent: list[str] = []  # of the last burst
        self.n = self.steps = 0

    @property
    def kills(self) -> int:
        return self.unit_kills + self.startup_kills + self.broker_kills

    def restart_unit(self) -> None:
        self.unit.drop_connection()
        if self.rnd.random() < 0.2:  # cut short while it restores and sends its backlog
            self.unit.spawn()
            time.sleep(self.rnd.uniform(0.25, 0.6))
            self.unit.kill()
            self.startup_kills += 1
        self.unit.start()

    def burst(self) -> None:
        """Commands on the control socket (pipelined) and from the cloud: events to publish."""
        sent = []
        for _ in range(self.rnd.randint(2, 8)):
            self.n += 1
            cid = f"local-{self.n}"
            self.local[cid] = False
            self.unit.send({"op": "command", "id": cid, "name": "locate"})
            sent.append(cid)
        if self.rnd.random() < 0.5 and self.cloud.connected():
            self.n += 1
            cid = f"remote-{self.n}"
            self.cloud.command(CAR, cid, "locate", time.time(), ttl=3600)
            self.remote.append(cid)
        self.sent = sent

    def collect_replies(self) -> None:
        for cid in self.sent:
            with contextlib.suppress(UnitDied, OSError, ValueError):
                reply = self.unit.reply()
                if reply.get("ok"):
                    self.local[cid] = True

    def step(self) -> None:
        self.burst()
        time.sleep(self.rnd.uniform(0, 0.03))  # while it commits and publishes
        self.steps += 1
        if self.steps % 5 == 0:
            time.sleep(0.05)  # the cloud's last command is saved (autosave on changes)
            self.broker.kill()  # with the cloud's queue in it
            self.broker_kills += 1
            self.broker.start()
            self.collect_replies()
        else:
            self.unit.kill()
            self.unit_kills += 1
            leftovers = [self.unit.leftover_reply() for _ in self.sent]
            for cid, reply in zip(self.sent, leftovers, strict=True):
                if reply is not None and reply.get("ok"):
                    self.local[cid] = True
            self.restart_unit()


@pytest.mark.slow
def test_nothing_is_lost_when_the_unit_and_the_broker_are_killed_while_publishing(tmp_path, unit):
    # SPEC S-SYNC-2, S-SYNC-3, U-DATA-1: ≥ 50 SIGKILLs of the unit and of the broker
    rnd = random.Random(SEED)
    b = persistent_broker()
    b.start()
    try:
        watcher = CloudClient(b, client_id="kagi-cloud-watcher").connect()
        watcher.disconnect()  # its persistent session queues every event from now on
        wait_for(lambda: (b.folder / "mosquitto.db").exists(), what="the session saved")
        publisher = CloudClient(b, client_id="kagi-cloud-publisher").connect()
        write_config(unit.folder, b)
        unit.start()
        # a command published before the car ever subscribed reaches nobody (not retained)
        wait_for(lambda: cloud_status(unit)["subscribed"], what="the car's first subscription")
        crash = Crash(unit, b, publisher, rnd)
        started = time.monotonic()
        while crash.kills < MIN_KILLS:
            crash.step()
        # all up again: the unit sends what is left, then the cloud comes for its queue
        wait_for(publisher.connected, 10)
        wait_for(
            lambda: cloud_status(unit)["caught_up"] and unit.status()["outbox"]["pending"] == 0,
            15,
            "the unit's outbox to empty",
        )
        elapsed = time.monotonic() - started
        unit.kill()
        publisher.disconnect()
        db = read_database(unit.database)
        made = db["next_seq"] - 1
        assert db["outbox"] == []

        watcher = CloudClient(b, client_id="kagi-cloud-watcher").connect()
        try:
            with contextlib.suppress(AssertionError):
                wait_for(lambda: len(first_arrivals(watcher.events_of(CAR))) >= made, 10)
            deliveries = watcher.events_of(CAR)
        finally:
            watcher.disconnect()
    finally:
        b.close()

    events = first_arrivals(deliveries)
    by_seq = collections.defaultdict(set)
    for e in deliveries:
        by_seq[e["seq"]].add(e["id"])
    missing = sorted(set(range(1, made + 1)) - set(by_seq))
    assert missing == [], f"seed {SEED}: lost events {missing[:20]} of {made}"
    assert all(len(ids) == 1 for ids in by_seq.values()), "one seq, two ids"
    results = collections.Counter(
        e["data"]["command_id"] for e in events if e["type"] == "command_result"
    )
    assert all(n == 1 for n in results.values()), results.most_common(3)
    # S-SYNC-3: every cloud command was answered; every local one whose reply came back too
    assert [c for c in crash.remote if results[c] != 1] == []
    assert [c for c, replied in crash.local.items() if replied and results[c] != 1] == []
    duplicates = len(deliveries) - len(events)
    print(
        f"\n{crash.unit_kills} unit kills while publishing, {crash.startup_kills} during "
        f"start-up, {crash.broker_kills} broker kills; {made} events, {duplicates} repeats; "
        f"{len(crash.remote)} cloud commands; {elapsed:.1f} s"
    )
    assert crash.unit_kills >= 30 and crash.broker_kills >= 8

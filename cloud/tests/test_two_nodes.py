"""Two cloud nodes, one SIGKILLed again and again (issue 15; SPEC S-SYNC-1…3, C-CAR-1): two
`kagi cloud serve` processes on one PostgreSQL and one Mosquitto, and a load as an operator's
busiest minutes bring it — drivers reserving through either node, two of them racing for the
same slot on both nodes at once; cars sending events; the console sending commands. One node at
a time is SIGKILLed at a random moment, 20 times, and started again.

Then: every reservation a node answered is there and no car is booked twice; every event a car
sent is applied exactly once, in order; every command has exactly one result, whichever node
the car's answer reached; every reservation reached its car's signed snapshot within a few
seconds, by whichever node was alive.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.auth import hash_password
from cloud.mosquitto import CLOUD_USER, Mosquitto
from cloud.pgserver import PgServer
from cloud.store import Store, open_store
from cloud.sync import public_key
from cloud.tests.conftest import TEMPLATE
from cloud.tests.test_sync_support import CLOUD_PASSWORD, SimCar, password, wait_until
from tools.rig.processes import CloudProcess, free_port

CARS = ("car-1", "car-2")
COMMANDED, REPORTING = CARS  # the console's commands go to one, the other sends events
MEMBERS = 6  # each may hold 15 open reservations (C-MAX-1)
PASSWORD = "a-drivers-password"
KILLS = 20
JST = dt.timezone(dt.timedelta(hours=9))


def driver(m: int) -> str:
    return f"TWO{m:05d}001"


def set_up(db: Store) -> str:
    db.add_station("st-1", name="Station 1", lat=35.0, lon=139.0, radius_m=50)
    for car in CARS:
        db.add_car(car, station_id="st-1")
    for m in range(MEMBERS):
        db.add_member(f"TWO{m:05d}", name=f"Member {m}")
        db.add_driver(driver(m), name=f"Driver {m}", email=f"d{m}@example.jp",
                      licence_expiry=dt.date(2035, 1, 1))  # fmt: skip
        db.set_password_hash(driver(m), hash_password(PASSWORD))
    db.add_staff("ops", name="Ops", role="operator")
    db.set_staff_password_hash("ops", hash_password(PASSWORD))
    return public_key(db)


class Node:
    def __init__(self, folder: Path, name: str, db_url: str, broker: Mosquitto) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.process = CloudProcess(
            folder, free_port(),
            ["--db", db_url, "--broker", broker.url, "--broker-password", CLOUD_PASSWORD,
             "--worker", name],
        )  # fmt: skip
        self.kills = 0

    def kill(self) -> None:
        assert self.process.proc is not None
        self.process.proc.kill()
        self.process.proc.wait()
        self.kills += 1


class Load:
    """The busy minutes: what each client was answered, kept for the checks."""

    def __init__(self, nodes: list[Node], cars: dict[str, SimCar]) -> None:
        self.nodes, self.cars = nodes, cars
        self.stop = threading.Event()
        self.reserved: dict[str, tuple[str, dt.datetime, float]] = {}  # id -> car, start, when
        self.raced = 0
        self.sent_events: dict[str, list[str]] = {REPORTING: []}
        self.commands: list[int] = []  # the HTTP status each command was answered with
        self.errors: list[str] = []
        self.refusals: list[str] = []  # the codes of the refused reservations
        self.transport_errors: list[str] = []  # requests cut by a kill
        self.lock = threading.Lock()

    def http(self, method: str, path: str, node: Node, **kw: Any) -> httpx.Response | None:
        """One request to `node`; None when the node died under it (the client moves on)."""
        try:
            return httpx.request(method, node.process.url + path, timeout=15, **kw)
        except httpx.TransportError as exc:
            self.transport_errors.append(f"{node.name}: {exc!r}")
            return None

    def token(self, node: Node, path: str, body: dict[str, str]) -> str | None:
        answer = self.http("POST", path, node, json=body)
        if answer is not None and answer.status_code != 200:
            self.transport_errors.append(f"{node.name} {path}: {answer.status_code} {answer.text}")
        return None if answer is None or answer.status_code != 200 else answer.json()["token"]

    def reserving(self) -> None:
        first = dt.datetime.combine(dt.date.today() + dt.timedelta(days=2), dt.time(0), JST)
        slot = 0
        while not self.stop.is_set() and slot < 2 * 15 * MEMBERS // 2:
            car = CARS[slot % 2]
            start = first + dt.timedelta(hours=slot // 2)
            body = {"car_id": car, "start": start.isoformat(),
                    "end": (start + dt.timedelta(minutes=30)).isoformat()}  # fmt: skip
            racers = [(driver((slot + k) % MEMBERS), self.nodes[k]) for k in (0, 1)]
            answers: list[httpx.Response | None] = [None, None]
            both = [
                threading.Thread(target=self.reserve, args=(who, node, body, answers, k))
                for k, (who, node) in enumerate(racers)
            ]
            for t in both:
                t.start()
            for t in both:
                t.join()
            won = [a for a in answers if a is not None and a.is_success]
            with self.lock:
                if len(won) > 1:
                    self.errors.append(f"slot {start} of {car} booked twice")
                for a in won:
                    self.reserved[a.json()["id"]] = (car, start, time.monotonic())
                self.raced += sum(1 for a in answers if a is not None and a.status_code == 409)
                self.refusals.extend(
                    a.json()["error"]["code"] for a in answers
                    if a is not None and not a.is_success
                )  # fmt: skip
            slot += 1
            time.sleep(0.05)

    def reserve(
        self, who: str, node: Node, body: dict[str, str], answers: list[Any], k: int
    ) -> None:
        token = self.token(node, "/v1/login", {"account_id": who, "password": PASSWORD})
        if token is not None:
            auth = {"authorization": f"Bearer {token}"}
            answers[k] = self.http("POST", "/v1/reservations", node, json=body, headers=auth)

    def sending_events(self, car: str) -> None:
        while not self.stop.is_set():
            event = self.cars[car].event("key_taken", {"position": "lend"})
            with self.lock:
                self.sent_events[car].append(event.id)
            time.sleep(0.02)

    def commanding(self) -> None:
        k = 0
        while not self.stop.is_set():
            node = self.nodes[k % 2]
            k += 1
            token = self.token(node, "/v1/console/login", {"staff_id": "ops", "password": PASSWORD})
            if token is None:
                continue
            answer = self.http("POST", f"/v1/console/cars/{COMMANDED}/commands/locate", node,
                               json={},
                               headers={"authorization": f"Bearer {token}"})  # fmt: skip
            if answer is not None:
                self.commands.append(answer.status_code)
            time.sleep(0.05)


@pytest.fixture
def database(pg_server: PgServer) -> Iterator[str]:
    name = f"two_nodes_{random.randrange(10**6)}"
    yield pg_server.create_database(name, template=TEMPLATE)
    pg_server.drop_database(name)


def test_one_of_two_nodes_killed_20_times_loses_and_repeats_nothing(
    database: str, tmp_path: Path
) -> None:
    with open_store(database) as db:
        key = set_up(db)
    accounts = {CLOUD_USER: CLOUD_PASSWORD, **{c: password(c) for c in CARS}}
    with Mosquitto(accounts) as broker:
        nodes = [Node(tmp_path / name, name, database, broker) for name in ("n1", "n2")]
        for node in nodes:
            node.process.start()
        located = (True, "located", {"position": [35.0, 139.0]})

        def answer(command: Any) -> tuple[bool, str, dict[str, Any]]:
            return located

        cars = {c: SimCar(broker, c, key, answer=answer).connect() for c in CARS}
        load = Load(nodes, cars)
        workers = [threading.Thread(target=load.reserving),
                   threading.Thread(target=load.commanding),
                   threading.Thread(target=load.sending_events, args=(REPORTING,))]  # fmt: skip
        for t in workers:
            t.start()
        rng = random.Random(15)
        try:
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.3, 1.2))
                victim = rng.choice(nodes)
                victim.kill()
                time.sleep(rng.uniform(0.0, 0.5))
                victim.process.start()
        finally:
            load.stop.set()
            for t in workers:
                t.join(30)
        try:
            check(database, load, cars)
        finally:
            for car in cars.values():
                car.close()
            for node in nodes:
                node.process.stop()
    assert sum(n.kills for n in nodes) == KILLS


def check(database: str, load: Load, cars: dict[str, SimCar]) -> None:
    assert load.errors == []
    cut = load.transport_errors
    figures = (
        f"{len(load.reserved)} reserved, refused {load.refusals[:5]}, {len(cut)} cut {cut[-2:]}"
    )
    assert len(load.reserved) >= 20 and load.raced >= 10, figures
    with open_store(database, migrate=False) as db:
        # every answered reservation is there; no car has two at once (C-CAR-1)
        kept = {r.reservation_id: r for r in db.list_reservations()}
        assert set(load.reserved) <= set(kept)
        for car in CARS:
            mine = sorted((r.start, r.end) for r in kept.values() if r.car_id == car)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(mine)), car

        # every event sent: kept once, applied once, in order
        def all_applied() -> bool:
            events = db.car_events(REPORTING)
            return len(events) == len(load.sent_events[REPORTING]) and all(
                e.applied_at is not None for e in events
            )

        wait_until(all_applied, 30, "every event applied")
        for car, sent in load.sent_events.items():
            events = db.car_events(car)
            assert [e.event_id for e in events] == sent
            assert [e.seq for e in events] == list(range(1, len(sent) + 1))
            assert db.car_status(car).event_seq == len(sent)

        # every command the cloud issued has exactly one result, from the car
        def all_answered() -> bool:
            issued = db.list_commands(COMMANDED)
            return bool(issued) and all(c.result is not None for c in issued)

        wait_until(all_answered, 15, "every command answered")
        assert load.commands.count(200) >= 20, load.commands
        issued = db.list_commands(COMMANDED)
        results = db.car_events(COMMANDED, "command_result")
        assert sorted(e.data["command_id"] for e in results) == sorted(c.command_id for c in issued)
        assert [e.seq for e in db.car_events(COMMANDED)] == list(range(1, len(results) + 1))

    # every reservation reached its car, signed, by whichever node was alive
    for rid, (car, _start, _answered) in load.reserved.items():

        def holds(bookings: dict[str, Any], rid: str = rid) -> bool:
            return rid in str(bookings)

        cars[car].wait_snapshot(holds, timeout=10)

"""A car on a desk: the runner with the shipped fakes, a manual clock and a memory store.

Tests speak the driver's language (`car.tap(ALICE)`, `car.open_door()`, `car.at(START - 14*MIN)`)
and read what a driver would see (`car.body.car.doors`, `car.prompts`, `car.reports(...)`).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import replace
from typing import Any

from firmware.bookings import Bookings, Driver, Reservation
from firmware.clock import ManualClock
from firmware.config import TripConfig
from firmware.effects import CommandResult, Effect, Prompt, Report
from firmware.fakes import FakeBody, FakeCloudLink, FakeReader, MemoryStore
from firmware.inputs import (
    BookingsChanged,
    BrakeChanged,
    CardTapped,
    DoorChanged,
    EngineChanged,
    Input,
    KeyChanged,
    LightsChanged,
    PositionChanged,
    RemoteCommand,
    VehicleData,
)
from firmware.runner import Runner
from protocol.cards import card_hash

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
MIN = 60
HOUR = 3600
JST = zoneinfo.ZoneInfo("Asia/Tokyo")
START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=JST).timestamp()  # the reservation: 10:00–12:00
END = START + 2 * HOUR

ALICE = bytes.fromhex("0101010101010101")  # d-alice's card; her reservation r1 is START..END
BOB = bytes.fromhex("0202020202020202")  # d-bob's card; his reservation r2 is later that day
STRANGER = bytes.fromhex("0303030303030303")  # registered to nobody
ALICE_ID, BOB_ID = "XXY00001001", "XXY00001002"


def bookings(
    version: int = 1,
    alice_end: float = END,
    alice_licence: str = "2030-12-31",
    alice_cards: tuple[bytes, ...] = (ALICE,),
    shift: float = 0.0,
) -> Bookings:
    """Alice's r1 (START..END) and Bob's r2 later that day, all moved by `shift` seconds."""
    return Bookings(
        version,
        (
            Reservation("r1", ALICE_ID, START + shift, alice_end + shift),
            Reservation("r2", BOB_ID, START + shift + 5 * HOUR, START + shift + 6 * HOUR),
        ),
        {
            ALICE_ID: Driver(
                ALICE_ID, alice_licence, frozenset(card_hash(KEY, c) for c in alice_cards)
            ),
            BOB_ID: Driver(BOB_ID, "2030-12-31", frozenset({card_hash(KEY, BOB)})),
        },
    )


class Car:
    def __init__(
        self,
        config: TripConfig | None = None,
        books: Bookings | None = None,
        t: float = START - HOUR,
        store: MemoryStore | None = None,
    ) -> None:
        self.config = config or TripConfig()
        self.store = store or MemoryStore()
        if store is None:
            self.store.bookings = books or bookings()
        self.body = FakeBody()
        self.clock = ManualClock(t)
        self.runner = Runner(
            self.config, KEY, self.store, self.body, FakeReader(), FakeCloudLink(), self.clock
        )
        self.runner.start()
        self.effects: list[Effect] = []  # of the last input
        self._commands = 0

    # ---- time ----
    @property
    def now(self) -> float:
        return self.clock.now()

    def at(self, t: float) -> list[Effect]:
        self.clock.set(t)
        return self.send(None)

    def advance(self, seconds: float) -> list[Effect]:
        return self.at(self.now + seconds)

    # ---- inputs ----
    def send(self, event: Input | None) -> list[Effect]:
        self.effects = self.runner.step(event)
        return self.effects

    def tap(self, idm: bytes) -> list[Effect]:
        return self.send(CardTapped(idm))

    def open_door(self, door: str = "driver") -> list[Effect]:
        return self.send(DoorChanged(door, True))

    def close_door(self, door: str = "driver") -> list[Effect]:
        return self.send(DoorChanged(door, False))

    def take_key(self) -> list[Effect]:
        return self.send(KeyChanged(False, "lend"))

    def return_key(self) -> list[Effect]:
        return self.send(KeyChanged(True, "return"))

    def engine(self, running: bool) -> list[Effect]:
        return self.send(EngineChanged(running))

    def brake(self, on: bool) -> list[Effect]:
        return self.send(BrakeChanged(on))

    def lights(self, on: bool) -> list[Effect]:
        return self.send(LightsChanged(on))

    def position(self, lat: float, lon: float) -> list[Effect]:
        return self.send(PositionChanged(lat, lon))

    def vehicle(self, odometer_km: float, fuel_pct: float) -> list[Effect]:
        return self.send(VehicleData(odometer_km, fuel_pct))

    def command(self, name: str, **args: Any) -> CommandResult:
        self._commands += 1
        effects = self.send(RemoteCommand(f"cmd-{self._commands}", name, args))
        results = [e for e in effects if isinstance(e, CommandResult)]
        assert len(results) == 1, effects
        return results[0]

    def new_bookings(self, books: Bookings) -> list[Effect]:
        return self.send(BookingsChanged(books))

    def restart(self) -> Car:
        """A power cut: a new unit on the same store."""
        car = Car(self.config, t=self.now, store=self.store)
        car._commands = self._commands  # the cloud's command ids stay unique across the cut
        return car

    # ---- what is seen ----
    @property
    def state(self) -> str:
        core = self.runner.core
        assert core is not None
        return core.state

    @property
    def overlay(self) -> str:
        core = self.runner.core
        assert core is not None
        return core.overlay

    @property
    def doors(self) -> str:
        return self.body.car.doors

    @property
    def immobilised(self) -> bool | None:
        return self.body.car.immobilised

    @property
    def led(self) -> str:
        return self.body.car.led

    @property
    def prompts(self) -> list[str]:
        return [e.id for e in self.effects if isinstance(e, Prompt)]

    def reports(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every event in the outbox (of one type), oldest first."""
        return [
            {"type": e.type, **e.data} for e in self.store.outbox if kind is None or e.type == kind
        ]

    def last_report(self) -> Report | None:
        reports = [e for e in self.effects if isinstance(e, Report)]
        return reports[-1] if reports else None

    def emitted(self, kind: type) -> list[Effect]:
        return [e for e in self.effects if isinstance(e, kind)]

    # ---- whole manoeuvres ----
    def start_by_card(self, t: float = START) -> None:
        self.at(t)
        self.tap(ALICE)
        assert self.state == "unlocked", self.effects

    def drive_off(self, t: float = START) -> None:
        self.start_by_card(t)
        self.open_door()
        self.take_key()
        self.close_door()
        self.engine(True)
        assert self.state == "in_use"

    def park(self) -> None:
        """Back at the station, ready to end: engine off, key at 返却, brake on, doors closed."""
        self.engine(False)
        self.brake(True)
        self.return_key()
        for door in ("driver", "passenger", "rear_left", "rear_right", "tailgate"):
            self.close_door(door)


def with_timing(**changes: Any) -> TripConfig:
    config = TripConfig()
    return replace(config, timing=replace(config.timing, **changes))

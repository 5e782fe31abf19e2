"""Fakes of the ports, shipped for tests and for `kagi unit run` with `sim:` adapters.

They do no I/O: the fake body keeps what was applied to it (the car as a test sees it), the fake
reader and the fake body let a test post inputs, the memory store keeps everything in dicts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from firmware.bookings import Bookings
from firmware.effects import (
    CommandResult,
    Effect,
    Hazard,
    Immobiliser,
    Lock,
    Prompt,
    ReaderLed,
    Report,
    Unlock,
)
from firmware.inputs import CardTapped, Input
from firmware.ports import Post, Submit
from firmware.store import OutboxEvent, to_outbox_event


@dataclass
class CarView:
    """The car's outputs as the body last set them."""

    doors: str = "unknown"
    immobilised: bool | None = None
    led: str = "dark"
    hazard_blinks: int = 0
    prompts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "doors": self.doors,
            "immobilised": self.immobilised,
            "led": self.led,
            "hazard_blinks": self.hazard_blinks,
            "prompts": list(self.prompts),
        }


class FakeBody:
    def __init__(self) -> None:
        self.applied: list[Effect] = []
        self.car = CarView()
        self._post: Post | None = None

    def start(self, post: Post) -> None:
        self._post = post

    def apply(self, effect: Effect) -> None:
        self.applied.append(effect)
        car = self.car
        match effect:
            case Lock():
                car.doors = "locked"
            case Unlock():
                car.doors = "unlocked"
            case Immobiliser(on=on):
                car.immobilised = on
            case Hazard(times=n):
                car.hazard_blinks += n
            case ReaderLed(pattern=p):
                car.led = p
            case Prompt(id=p):
                car.prompts.append(p)

    def input(self, event: Input) -> None:
        """A switch on the car changed (as the board would report it)."""
        assert self._post is not None, "the body was not started"
        self._post(event)

    def stop(self) -> None:
        self._post = None

    def status_fields(self) -> dict[str, Any]:
        return {"car": self.car.to_dict()}  # the simulated car's outputs, as a rig reads them


class FakeReader:
    def __init__(self) -> None:
        self._post: Post | None = None

    def start(self, post: Post) -> None:
        self._post = post

    def tap(self, idm: bytes) -> None:
        assert self._post is not None, "the reader was not started"
        self._post(CardTapped(idm))

    def stop(self) -> None:
        self._post = None

    def status_fields(self) -> dict[str, Any]:
        return {}


class FakeCloudLink:
    """Hands the runner what a test gives it; counts outbox wake-ups (nothing leaves the car)."""

    def __init__(self) -> None:
        self.wakeups = 0
        self.config_version = 0
        self._submit: Submit | None = None

    def start(self, submit: Submit) -> None:
        self._submit = submit

    def deliver(self, event: Input) -> Future[Any]:
        assert self._submit is not None, "the cloud link was not started"
        return self._submit(event)

    def committed(self, snapshot: dict[str, Any], bookings_version: int) -> None:
        pass

    def outbox_changed(self) -> None:
        self.wakeups += 1

    def stop(self) -> None:
        self._submit = None

    def status_fields(self) -> dict[str, Any]:
        return {}


class MemoryStore:
    """The Store port in memory: same semantics as SqliteStore, no durability."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.bookings = Bookings()
        self.outbox: list[OutboxEvent] = []
        self.commands: set[str] = set()
        self.next_seq = 1

    def load(self) -> tuple[dict[str, Any] | None, Bookings]:
        return copy.deepcopy(self.snapshot), self.bookings

    def commit(
        self,
        snapshot: dict[str, Any],
        reports: Sequence[Report | CommandResult],
        bookings: Bookings | None = None,
        command_id: str | None = None,
    ) -> list[OutboxEvent]:
        events = [to_outbox_event(r, self.next_seq + i) for i, r in enumerate(reports)]
        self.next_seq += len(events)
        self.outbox.extend(events)
        self.snapshot = copy.deepcopy(snapshot)
        if bookings is not None:
            self.bookings = bookings
        if command_id is not None:
            self.commands.add(command_id)
        return events

    def command_seen(self, command_id: str) -> bool:
        return command_id in self.commands

    def pending(self, limit: int = 100) -> list[OutboxEvent]:
        return self.outbox[:limit]

    def acknowledge(self, event_id: str) -> None:
        self.outbox = [e for e in self.outbox if e.id != event_id]

    def close(self) -> None:
        pass

"""The ports the runner talks to. Adapters implement them; fakes ship in `firmware.fakes`.

Adapters run in their own threads and only ever post inputs to the runner's queue; the runner is
the only writer of trip state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from firmware.bookings import Bookings
from firmware.effects import CommandResult, Effect, Report
from firmware.inputs import Input
from firmware.store import OutboxEvent

Post = Callable[[Input], None]
# An input handed to the runner, and a future of its effects: done once they are committed.
Submit = Callable[[Input], "Future[Any]"]


class Adapter(Protocol):
    """What every adapter declares besides its work."""

    def status_fields(self) -> dict[str, Any]:
        """What the unit's status view shows of this adapter, under keys of its own
        (`{}`: nothing to show)."""
        ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def timeout(self, until: float | None) -> float | None:
        """How long the runner may wait for input before `until` falls due (None: forever)."""
        ...


class Reader(Adapter, Protocol):
    """The card reader: posts one CardTapped per presentation."""

    def start(self, post: Post) -> None: ...
    def stop(self) -> None: ...


class Body(Adapter, Protocol):
    """The I/O board: posts input changes, applies outputs (lock, LEDs, hazard, voice…)."""

    def start(self, post: Post) -> None: ...
    def apply(self, effect: Effect) -> None: ...
    def stop(self) -> None: ...


class CloudLink(Adapter, Protocol):
    """The link to the cloud: hands the runner commands and bookings, sends the outbox and the
    car's state (with `config_version`, the fleet configuration the car runs, O-OTA-4)."""

    config_version: int

    def start(self, submit: Submit) -> None:
        """Begin; hand inputs to the runner with `submit`, so that a message is acknowledged to
        the cloud only once its input is committed."""
        ...

    def committed(self, snapshot: dict[str, Any], bookings_version: int) -> None:
        """The runner committed a step (on its thread): the trip state it saved and the
        bookings version it holds."""
        ...

    def outbox_changed(self) -> None:
        """New events wait in the store's outbox."""
        ...

    def stop(self) -> None: ...


class Store(Protocol):
    def load(self) -> tuple[dict[str, Any] | None, Bookings]: ...
    def commit(
        self,
        snapshot: dict[str, Any],
        reports: Sequence[Report | CommandResult],
        bookings: Bookings | None = None,
        command_id: str | None = None,
    ) -> list[OutboxEvent]: ...
    def command_seen(self, command_id: str) -> bool: ...
    def pending(self, limit: int = 100) -> list[OutboxEvent]: ...
    def acknowledge(self, event_id: str) -> None: ...
    def close(self) -> None: ...

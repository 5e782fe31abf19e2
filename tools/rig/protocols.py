"""The rig's protocols: the small interfaces every rig's drivers implement, in labgrid's manner.

A scenario drives a car through these and nothing else (besides the cloud's HTTP API and `kagi`
commands): the simulated rig (`tools/sim/drivers.py`) and a real bench (`tools/rig/real.py`)
implement them with their own drivers, so the same scenario runs on either.

- `PowerProtocol`, the car unit's supply: sim, SIGKILL and restart `kagi unit run`; a bench,
  the fixture's supply relay.
- `CardPresenterProtocol`, a hand at the reader: sim, nfcpy's tt3 emulation on `udp:`; a bench,
  a card robot.
- `CarSwitchesProtocol`, the doors, key box, engine, brake and lights, GPS and CAN: sim, the
  simulated board's pins (GPS and CAN through the unit's control socket); a bench, the fixture
  board.
- `CarOutputsProtocol`, locks, immobiliser, hazards, reader LEDs, voice: sim, the simulated
  board's pins; a bench, the fixture board.
- `ClockProtocol`, car time for the cloud and the car together; `NetworkProtocol`, the mobile
  signal (a TCP relay it can cut); `CloudViewProtocol`, what the operator sees of the cloud
  (`kagi cloud`); `UnitConsoleProtocol`, the unit's service interface (control socket, log,
  `kagi unit state`); `MailboxProtocol`, the drivers' mailboxes (an SMTP server): every rig
  runs these parts alike, on this machine (`tools/rig/`).
"""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from typing import Any, Protocol


class PowerProtocol(Protocol):
    def cut(self) -> None:
        """The car unit loses power at once: whatever it had not saved is gone."""
        ...

    def on(self) -> None:
        """Power back: returns once the unit has restored and answers again."""
        ...


class CardPresenterProtocol(Protocol):
    def present(self, idm: bytes, master_key: bytes | None = None) -> None:
        """Hold a card in the reader's field (a FeliCa Lite-S card with `master_key`)."""
        ...

    def remove(self) -> None:
        """Take the card out of the field."""
        ...

    def close(self) -> None: ...


class CarSwitchesProtocol(Protocol):
    def set(self, name: str, on: bool) -> None:
        """One of the car's switches as the I/O board sees it: `door_driver`, `door_passenger`,
        `door_rear_left`, `door_rear_right`, `tailgate`, `key_present`, `key_lend`, `engine`,
        `brake`, `lights`."""
        ...

    def position(self, lat: float, lon: float) -> None:
        """What the car's GPS says."""
        ...

    def meters(self, odometer_km: float, fuel_pct: float) -> None:
        """What the car's CAN bus says of the odometer and the fuel gauge."""
        ...


class CarOutputsProtocol(Protocol):
    def level(self, name: str) -> bool:
        """An output now: `lock`, `unlock`, `immobiliser`, `hazard`, `led_red`, `led_green`,
        `led_yellow`, `keybox_lock`…"""
        ...

    def levels(self) -> dict[str, bool]:
        """Every output now."""
        ...

    def edges(self, name: str) -> list[tuple[float, bool]]:
        """Every change of an output since the rig started, oldest first: (seconds on the rig's
        monotonic clock, level)."""
        ...

    def wait_level(self, name: str, on: bool, timeout: float) -> None:
        """Until the output is at `on`; AssertionError after `timeout` seconds."""
        ...

    def prompts(self) -> list[str]:
        """Every voice prompt played, in order, by prompt ID (`firmware/prompts.py`)."""
        ...

    def led_patterns(self) -> list[str]:
        """Every reader LED pattern shown, in order."""
        ...


class ClockProtocol(Protocol):
    @property
    def now(self) -> dt.datetime:
        """The rig's car time (aware)."""
        ...

    def advance(self, seconds: float) -> None:
        """Move car time forward for the cloud and the car; returns once the car has fired what
        fell due."""
        ...

    def sync(self) -> None:
        """Tell every part the rig's time again (a unit just restarted)."""
        ...


class NetworkProtocol(Protocol):
    @property
    def is_open(self) -> bool: ...

    def cut(self) -> None:
        """No signal: every connection of the car dropped, new ones refused."""
        ...

    def restore(self) -> None: ...


class CloudViewProtocol(Protocol):
    """What the operator sees of the cloud and can do there, as `kagi cloud` commands do."""

    @property
    def api_url(self) -> str:
        """The cloud's HTTP API (the phone site's)."""
        ...

    @property
    def fleet_key(self) -> str:
        """The fleet key card IDs are hashed with (hex)."""
        ...

    def list(self, what: str, **filters: str) -> list[dict[str, Any]]:
        """`kagi cloud list WHAT --json` (members, drivers, cards, stations, cars, reservations,
        events, car-status, notifications), with its filters (`car="car-001"`)."""
        ...

    def kagi(self, *args: str) -> str:
        """One `kagi cloud …` command on this cloud (its database given); its output, or
        RigError with what it said."""
        ...

    def log_tail(self) -> str: ...


class UnitConsoleProtocol(Protocol):
    """The car unit's service interface: its control socket, its log, `kagi unit state`."""

    def status(self) -> dict[str, Any]:
        """What the unit holds now (`{"op": "status"}`)."""
        ...

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control-socket request; its answer."""
        ...

    def saved(self) -> dict[str, Any]:
        """`kagi unit state --json`: the saved trip state, the bookings it holds, its outbox."""
        ...

    def log_size(self) -> int:
        """Where the unit's log ends now (a mark for `log_since`)."""
        ...

    def log_since(self, offset: int) -> str: ...

    def log_tail(self, lines: int = 40) -> str: ...


class MailboxProtocol(Protocol):
    @property
    def messages(self) -> list[EmailMessage]: ...

    def subjects(self, to: str | None = None) -> list[str]: ...

    def one(self, subject_part: str, to: str) -> str:
        """The text of the one mail whose subject has `subject_part` sent to `to`."""
        ...

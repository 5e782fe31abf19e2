"""What the trip core is told: every input is a plain value, stamped with time by the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware.bookings import Bookings
from protocol.messages import CONFIG_STEPS, UPDATE_STEPS

DOORS = ("driver", "passenger", "rear_left", "rear_right", "tailgate")
KEY_POSITIONS = ("lend", "return")  # 貸出 / 返却


@dataclass(frozen=True)
class CardTapped:
    """A card presented to the reader (one per presentation); only its IDm is read.

    `authenticated` is True only when the reader ran a successful FeliCa Lite-S mutual
    authentication with the card's own key (a strong card); a plain card is never authenticated.
    """

    idm: bytes
    authenticated: bool = False


@dataclass(frozen=True)
class DoorChanged:
    door: str
    open: bool


@dataclass(frozen=True)
class KeyChanged:
    """The key box: is the key in it, and at which position (貸出 lend / 返却 return)."""

    present: bool
    position: str = "return"


@dataclass(frozen=True)
class EngineChanged:
    running: bool


@dataclass(frozen=True)
class BrakeChanged:
    on: bool


@dataclass(frozen=True)
class LightsChanged:
    on: bool


@dataclass(frozen=True)
class PositionChanged:
    lat: float
    lon: float


@dataclass(frozen=True)
class VehicleData:
    odometer_km: float
    fuel_pct: float


@dataclass(frozen=True)
class RemoteCommand:
    """A command from the cloud (already verified by the CloudLink): id, name and arguments."""

    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BookingsChanged:
    """A new booking snapshot from the cloud (reservations, drivers, card hashes)."""

    bookings: Bookings


@dataclass(frozen=True)
class ClockMoved:
    """Nothing but time passed: the runner fires what fell due."""


@dataclass(frozen=True)
class BoardLinkChanged:
    """The serial link to the I/O board went down, or is up again (then the core re-applies
    every output its state implies: the board may have restarted or been replaced).

    `board` is what the board said of itself (name, firmware, pin map, reset cause, how long it
    went without the unit's heartbeat); `reason` says what happened, for the event and the log.
    """

    up: bool
    reason: str = ""
    board: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClockSkew:
    """The cloud link saw a signed message whose issue time is far from the unit's clock: the
    unit's clock is probably wrong (commands would look expired, or not expire). Reported once.

    `offset` is the message's time minus the unit's, in seconds; `source` names the message."""

    offset: float
    source: str = ""


@dataclass(frozen=True)
class UpdateStep:
    """The update agent reached a step of an offered update (SPEC O-OTA-1): the core reports it
    to the cloud as an `update_step` event, in order with everything else the car did."""

    step: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigStep:
    """The configuration agent reached a step of an offered fleet configuration (O-OTA-4)."""

    step: str
    details: dict[str, Any] = field(default_factory=dict)


Input = (
    CardTapped
    | DoorChanged
    | KeyChanged
    | EngineChanged
    | BrakeChanged
    | LightsChanged
    | PositionChanged
    | VehicleData
    | RemoteCommand
    | BookingsChanged
    | ClockMoved
    | BoardLinkChanged
    | ClockSkew
    | UpdateStep
    | ConfigStep
)


def check_input(event: Input) -> None:
    """Refuse an input whose values are out of range (SPEC X-SEC-3); raises ValueError."""
    if isinstance(event, CardTapped) and len(event.idm) != 8:
        raise ValueError(f"card tapped: IDm must be 8 bytes, got {len(event.idm)}")
    if isinstance(event, DoorChanged) and event.door not in DOORS:
        raise ValueError(f"door changed: unknown door {event.door!r}; doors are {DOORS}")
    if isinstance(event, KeyChanged) and event.position not in KEY_POSITIONS:
        raise ValueError(f"key changed: position must be one of {KEY_POSITIONS}")
    if isinstance(event, PositionChanged) and not (
        -90 <= event.lat <= 90 and -180 <= event.lon <= 180
    ):
        raise ValueError(f"position: out of range ({event.lat}, {event.lon})")
    if isinstance(event, UpdateStep) and event.step not in UPDATE_STEPS:
        raise ValueError(f"update step: {event.step!r} is not one of {UPDATE_STEPS}")
    if isinstance(event, ConfigStep) and event.step not in CONFIG_STEPS:
        raise ValueError(f"config step: {event.step!r} is not one of {CONFIG_STEPS}")
    if isinstance(event, RemoteCommand) and not (event.id and event.name):
        raise ValueError("remote command: id and name are required")

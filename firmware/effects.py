"""What the trip core asks for: outputs on the car, feedback, and events to report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Reader LED patterns of SPEC U-FB-1; the board knows how to show each one.
LED_PATTERNS = (
    "dark",
    "green_blink",  # a card start is possible
    "red_solid",  # a tap was accepted and is being processed
    "three_colour_blink",  # waiting (the guide's unit waits for its centre; ours does not)
    "orange_blink",  # a card end is possible
    "green_yellow_blink",  # card registration
    "forgotten_blink",  # forgotten-item window
    "error",  # a tap was refused
)


@dataclass(frozen=True)
class Lock:
    pass


@dataclass(frozen=True)
class Unlock:
    pass


@dataclass(frozen=True)
class Immobiliser:
    on: bool


@dataclass(frozen=True)
class Hazard:
    times: int


@dataclass(frozen=True)
class ReaderLed:
    pattern: str


@dataclass(frozen=True)
class Prompt:
    id: str


@dataclass(frozen=True)
class Report:
    """An event for the cloud; it is committed with the state change that caused it."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandResult:
    """Exactly one per remote command (SPEC S-SYNC-3); travels in the outbox like a Report."""

    command_id: str
    ok: bool
    code: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OfferUpdate:
    """The cloud offers this software version (O-OTA-1): for the unit's update agent, which
    downloads it and installs it only when the car may (O-OTA-2)."""

    version: str


@dataclass(frozen=True)
class OfferConfig:
    """The cloud offers fleet configuration `version` (O-OTA-4): for the configuration agent,
    which applies it between trips."""

    version: int


Effect = (
    Lock | Unlock | Immobiliser | Hazard | ReaderLed | Prompt | Report | CommandResult
    | OfferUpdate | OfferConfig
)  # fmt: skip

CAR_OUTPUTS = (Lock, Unlock, Immobiliser, Hazard, ReaderLed, Prompt)


def effect_to_dict(effect: Effect) -> dict[str, Any]:
    return {"effect": type(effect).__name__, **dataclasses.asdict(effect)}

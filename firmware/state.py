"""The data the trip core keeps: sensors, the running trip, applied outputs, deadlines.

All of it is plain data that round-trips through JSON, so the store can save it whole after every
input and the unit can restore exactly the same state after a power cut (U-DATA-1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from firmware.config import EndChecks, Station
from firmware.inputs import DOORS
from protocol.geo import distance_m

SNAPSHOT_VERSION = 1


@dataclass
class Sensors:
    """The car's inputs as last reported by the board."""

    doors: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(DOORS, False))
    key_present: bool = True
    key_position: str = "return"
    engine: bool = False
    brake: bool = True
    lights: bool = False
    position: list[float] | None = None  # [lat, lon]
    odometer_km: float | None = None
    fuel_pct: float | None = None

    @property
    def key_home(self) -> bool:
        """The key is in the key box at 返却 (return)."""
        return self.key_present and self.key_position == "return"

    @property
    def doors_closed(self) -> bool:
        return not any(self.doors.values())


@dataclass
class Trip:
    reservation_id: str
    driver_id: str
    started_at: float
    started_by: str  # "card" or "remote"
    card_end: bool  # U-START-2: False when started remotely after the reader went dark
    end: float  # the reservation's end as last known (moves with extensions, U-USE-3)
    key_taken: bool = False
    held: str | None = None  # a security timer that fell due while the engine ran (X-SAFE-1)
    last_reminder: float | None = None
    overtime_reported: bool = False
    ended_at: float | None = None
    forgotten_used: bool = False  # U-FGT-3: one forgotten-item unlock per trip
    forgotten_open: bool = False  # the doors are unlocked by that unlock
    forgotten_expired: bool = False  # U-FGT-4: the window ran out while they were


@dataclass
class Outputs:
    """What the unit last commanded; None means unknown (after a restart)."""

    doors: str | None = None  # "locked" / "unlocked"
    immobilised: bool | None = None
    led: str | None = None


@dataclass
class Registration:
    reservation_id: str
    driver_id: str


@dataclass
class Operator:
    """What the operator set on the car by command (O-CAR-1); it outlasts trips and restarts."""

    immobilised: bool = False  # held immobilised in every state until `release`
    service_mode: bool = False  # a technician's mode: no reservation starts
    unlocked: bool = False  # doors unlocked while idle (a cleaner); ends with a lock or a start


@dataclass
class TripData:
    sensors: Sensors = field(default_factory=Sensors)
    trip: Trip | None = None
    outputs: Outputs = field(default_factory=Outputs)
    deadlines: dict[str, float] = field(default_factory=dict)
    registration: Registration | None = None
    consumed: list[str] = field(default_factory=list)  # reservations whose trip has started
    last_time: float | None = None
    operator: Operator = field(default_factory=Operator)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> TripData:
        trip = data.get("trip")
        reg = data.get("registration")
        return TripData(
            sensors=Sensors(**data["sensors"]),
            trip=Trip(**trip) if trip else None,
            outputs=Outputs(**data["outputs"]),
            deadlines=dict(data["deadlines"]),
            registration=Registration(**reg) if reg else None,
            consumed=list(data["consumed"]),
            last_time=data.get("last_time"),
            operator=Operator(**data.get("operator", {})),  # absent in a unit's older state
        )


def end_checks(
    sensors: Sensors, checks: EndChecks, station: Station
) -> tuple[list[str], list[str]]:
    """U-END-1: the checks that fail, as (blocking, warnings), each named as in CHECK_PROMPTS."""
    failed: list[str] = []
    if sensors.engine:
        failed.append("engine")
    if not sensors.key_home:
        failed.append("key")
    if not sensors.brake:
        failed.append("brake")
    if not sensors.doors_closed:
        failed.append("doors")
    optional = {
        "lights": (checks.lights, not sensors.lights),
        "position": (checks.geofence, in_station(sensors.position, station)),
    }
    blocking, warnings = failed, list[str]()
    for name, (mode, ok) in optional.items():
        if ok or mode == "off":
            continue
        (blocking if mode == "block" else warnings).append(name)
    return blocking, warnings


def in_station(position: list[float] | None, station: Station) -> bool:
    """Inside the station's geofence; a station without a position has no geofence."""
    if station.lat is None or station.lon is None:
        return True
    if position is None:
        return False
    return distance_m(position[0], position[1], station.lat, station.lon) <= station.radius_m

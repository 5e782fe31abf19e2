"""The domain values the booking rules and fees take: plain, frozen dataclasses.

The store loads rows into these and the API passes them to `cloud.booking`, `cloud.fees` and
`cloud.penalties`; nothing here reads a clock or a database. Every datetime must be timezone-aware
(any zone: the rules convert to the policy's zone where a local day or month matters); a naive
one is refused with ValueError.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Status(enum.StrEnum):
    """A reservation's life: reserved → in_use (the trip started) → completed (returned), or
    reserved → cancelled."""

    RESERVED = "reserved"
    IN_USE = "in_use"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({Status.RESERVED, Status.IN_USE})  # "open" reservations (C-MAX-1)


@dataclass(frozen=True)
class Member:
    """A member (会員): the contract holder; its ID cannot reserve (C-DRV-1).

    `unauthorised_extensions` are the instants of the member's late returns without an extension
    (C-PEN-1): for each, the reservation's (extended) end that was overrun — see
    `cloud.penalties.unauthorised_extension_at`. The store keeps at least the last
    `penalties.window_months` of them. `revoked` is set once the membership was revoked."""

    id: str
    revoked: bool = False
    unauthorised_extensions: tuple[dt.datetime, ...] = ()


@dataclass(frozen=True)
class Driver:
    """A registered driver (運転者) of a member. `licence_expiry` is the last local day on which
    the licence is valid (None: no licence on file). An admin driver sees and manages the
    reservations of all the member's drivers."""

    id: str
    member_id: str
    licence_expiry: dt.date | None
    admin: bool = False


Actor = Member | Driver  # who is logged in and asking


@dataclass(frozen=True)
class Car:
    """A car (or, under another policy, a parking space or a facility's room). `kind` selects
    per-kind rules (`[kinds.<kind>]` in the policy); "" follows the base rules."""

    id: str
    kind: str = ""


@dataclass(frozen=True)
class Reservation:
    """A reservation as the store holds it. `end` is the current end, after any extensions;
    `changes` and `extensions` count the times its times were changed or extended.
    `started_at` is the start operation (tap or phone), `returned_at` the successful end."""

    id: str
    car_id: str
    driver_id: str
    member_id: str
    start: dt.datetime
    end: dt.datetime
    status: Status = Status.RESERVED
    changes: int = 0
    extensions: int = 0
    started_at: dt.datetime | None = None
    returned_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end", "started_at", "returned_at"):
            aware(getattr(self, name), f"Reservation.{name}")
        if not isinstance(self.status, Status):
            object.__setattr__(self, "status", Status(self.status))


@dataclass(frozen=True)
class Refuel:
    """One refuelling during a trip (F-FUEL-1)."""

    litres: float
    fuel_card: bool = True  # paid with the car's fuel card (an advance payment earns nothing)


@dataclass(frozen=True)
class BookingRequest:
    """A new reservation: `actor` (who is logged in) books `car` for `driver` of `member`."""

    actor: Actor
    driver: Driver
    member: Member
    car: Car
    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        aware(self.start, "BookingRequest.start")
        aware(self.end, "BookingRequest.end")
        if self.driver.member_id != self.member.id:
            raise ValueError(
                f"BookingRequest: driver {self.driver.id} is not a driver of member "
                f"{self.member.id}"
            )


@dataclass(frozen=True)
class ChangeRequest:
    """New times for an existing reservation (C-CHG-1). `driver` and `member` are the
    reservation's; `car` is its car."""

    actor: Actor
    reservation: Reservation
    driver: Driver
    member: Member
    car: Car
    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        aware(self.start, "ChangeRequest.start")
        aware(self.end, "ChangeRequest.end")
        _same_reservation(self.reservation, self.driver, self.member, self.car)


@dataclass(frozen=True)
class CancelRequest:
    """Cancelling a reservation (C-CAN-1)."""

    actor: Actor
    reservation: Reservation
    car: Car

    def __post_init__(self) -> None:
        if self.car.id != self.reservation.car_id:
            raise ValueError(f"CancelRequest: car {self.car.id} is not the reservation's car")


@dataclass(frozen=True)
class ExtensionRequest:
    """Moving a running trip's end later (C-EXT-1)."""

    actor: Actor
    reservation: Reservation
    driver: Driver
    car: Car
    end: dt.datetime

    def __post_init__(self) -> None:
        aware(self.end, "ExtensionRequest.end")
        if self.car.id != self.reservation.car_id:
            raise ValueError(f"ExtensionRequest: car {self.car.id} is not the reservation's car")
        if self.driver.id != self.reservation.driver_id:
            raise ValueError(
                f"ExtensionRequest: driver {self.driver.id} is not the reservation's driver"
            )


# --- from the store's rows ------------------------------------------------------------------
# Structural: any object with these attributes (the rows of `cloud.store.records`) converts, so
# this module imports nothing of the store.


class MemberRow(Protocol):
    @property
    def member_id(self) -> str: ...
    @property
    def status(self) -> str: ...  # active | suspended | revoked


class DriverRow(Protocol):
    @property
    def driver_id(self) -> str: ...
    @property
    def member_id(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...
    @property
    def licence_expiry(self) -> dt.date | None: ...


class CarRow(Protocol):
    @property
    def car_id(self) -> str: ...
    @property
    def kind(self) -> str: ...


class ReservationRow(Protocol):
    @property
    def reservation_id(self) -> str: ...
    @property
    def car_id(self) -> str: ...
    @property
    def driver_id(self) -> str: ...
    @property
    def member_id(self) -> str: ...
    @property
    def start(self) -> dt.datetime: ...
    @property
    def end(self) -> dt.datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def change_count(self) -> int: ...
    @property
    def extension_count(self) -> int: ...
    @property
    def started_at(self) -> dt.datetime | None: ...
    @property
    def returned_at(self) -> dt.datetime | None: ...


class RefuelRow(Protocol):
    @property
    def litres(self) -> float: ...
    @property
    def fuel_card(self) -> bool: ...


def member_from(row: MemberRow, unauthorised_extensions: Iterable[dt.datetime] = ()) -> Member:
    """A member from its row and the (extended) ends its late returns overran (C-PEN-1)."""
    return Member(
        row.member_id,
        revoked=row.status == "revoked",
        unauthorised_extensions=tuple(sorted(unauthorised_extensions)),
    )


def driver_from(row: DriverRow) -> Driver:
    return Driver(row.driver_id, row.member_id, row.licence_expiry, admin=row.is_admin)


def car_from(row: CarRow) -> Car:
    return Car(row.car_id, row.kind)


def reservation_from(row: ReservationRow) -> Reservation:
    return Reservation(
        row.reservation_id,
        row.car_id,
        row.driver_id,
        row.member_id,
        row.start,
        row.end,
        Status(row.status),
        changes=row.change_count,
        extensions=row.extension_count,
        started_at=row.started_at,
        returned_at=row.returned_at,
    )


def refuel_from(row: RefuelRow) -> Refuel:
    return Refuel(row.litres, row.fuel_card)


def _same_reservation(r: Reservation, driver: Driver, member: Member, car: Car) -> None:
    if driver.id != r.driver_id or member.id != r.member_id or car.id != r.car_id:
        raise ValueError(
            f"reservation {r.id} belongs to driver {r.driver_id}, member {r.member_id}, car "
            f"{r.car_id}; got {driver.id}, {member.id}, {car.id}"
        )


def utc(value: dt.datetime) -> dt.datetime:
    """`value` in UTC: arithmetic on aware datetimes sharing a zone object is wall-clock time in
    Python, which is wrong across a daylight-saving change; in UTC it is elapsed time."""
    return value.astimezone(dt.UTC)


def aware(value: dt.datetime | None, what: str) -> None:
    """Refuse a naive datetime: every instant the rules take carries its zone."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{what}: expected a timezone-aware datetime, got {value!r}")

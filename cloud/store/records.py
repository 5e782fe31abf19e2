"""The rows the store returns, as frozen dataclasses. Times are aware datetimes in UTC."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# A live reservation holds its car and its driver's time; the others are history.
# The same words as cloud.model.Status: reserved → in_use (trip started) → completed (returned),
# or reserved → cancelled.
LIVE_STATUSES = ("reserved", "in_use")
STATUSES = ("reserved", "in_use", "completed", "cancelled")
MEMBER_STATUSES = ("active", "suspended", "revoked")
CHANGE_KINDS = ("created", "changed", "extended", "cancelled", "started", "returned")


@dataclass(frozen=True)
class Member:
    member_id: str  # 8 characters, e.g. XXY00001
    name: str
    email: str | None
    status: str  # active | suspended | revoked (C-PEN-1)
    created_at: dt.datetime


@dataclass(frozen=True)
class Driver:
    driver_id: str  # 11 characters: the member ID and 3 digits, e.g. XXY00001001
    member_id: str
    name: str
    email: str
    is_admin: bool  # sees and manages all of the member's drivers' reservations
    licence_expiry: dt.date | None  # the last day the licence is valid (C-LIC-1); None: none
    created_at: dt.datetime


@dataclass(frozen=True)
class Card:
    card_hash: str  # protocol.cards.card_hash of the IDm; the IDm itself is never stored
    driver_id: str
    strong: bool  # a FeliCa Lite-S card with mutual authentication, not just an IDm
    registered_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Station:
    station_id: str
    name: str
    lat: float
    lon: float
    radius_m: float  # the geofence of U-END-1


@dataclass(frozen=True)
class Car:
    car_id: str
    station_id: str
    name: str
    kind: str  # selects the policy's per-kind rules ("" follows the base rules)
    created_at: dt.datetime


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    car_id: str
    driver_id: str
    member_id: str
    start: dt.datetime
    end: dt.datetime
    buffer_minutes: int  # the car buffer (C-CAR-1) this reservation was written with
    status: str  # reserved | in_use | completed | cancelled
    change_count: int  # C-CHG-1
    extension_count: int  # C-EXT-1
    cancellation_fee: int | None  # yen, set on cancel (F-CAN-1)
    version: int  # +1 on every write; pass it back as expected_version
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None = None  # the trip's start operation (from its trip)
    returned_at: dt.datetime | None = None  # the trip's successful end

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


@dataclass(frozen=True)
class ReservationChange:
    change_id: int
    reservation_id: str
    at: dt.datetime
    kind: str  # created | changed | extended | cancelled | started | returned
    old_start: dt.datetime | None
    old_end: dt.datetime | None
    new_start: dt.datetime | None
    new_end: dt.datetime | None


@dataclass(frozen=True)
class Trip:
    reservation_id: str
    started_at: dt.datetime
    started_by: str  # card | remote
    ended_at: dt.datetime | None
    odometer_start_km: float | None
    odometer_end_km: float | None
    fuel_start_pct: float | None
    fuel_end_pct: float | None
    lat_start: float | None
    lon_start: float | None
    lat_end: float | None
    lon_end: float | None
    overtime_minutes: int  # F-OVER-1
    unauthorised_extension: bool  # returned late without extending (C-PEN-1)

    @property
    def distance_km(self) -> float | None:
        if self.odometer_start_km is None or self.odometer_end_km is None:
            return None
        return self.odometer_end_km - self.odometer_start_km


@dataclass(frozen=True)
class Refuel:
    refuel_id: int
    reservation_id: str
    at: dt.datetime
    litres: float
    fuel_card: bool  # paid with the car's fuel card (F-FUEL-1)
    amount_yen: int | None = None  # the receipt's amount (O-ADM-1)
    kind: str = "receipt"  # receipt: the car's fuel card; emergency: the driver paid, reimbursed
    recorded_by: str | None = None  # the staff member who entered the receipt


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    member_id: str
    reservation_id: str | None
    issued_at: dt.datetime
    lines: tuple[dict[str, Any], ...]  # each {"code", "yen", ...} (cloud.fees.InvoiceLine)
    total: int  # the sum of the lines' yen

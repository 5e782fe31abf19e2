"""The reservations, drivers and card hashes a car holds, and the windows they open.

The cloud sends these as a snapshot (S-SYNC-1); the car decides every tap from them alone.
Times are seconds since the epoch (UTC); a licence expiry is a local calendar day.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from firmware.config import Timing


@dataclass(frozen=True)
class Reservation:
    id: str
    driver_id: str
    start: float
    end: float


@dataclass(frozen=True)
class Driver:
    id: str
    licence_expiry: str  # ISO date: the last day the licence is valid
    cards: frozenset[str] = frozenset()  # keyed hashes of registered IDms
    # those of `cards` registered as strong (FeliCa Lite-S): they open only when authenticated
    strong_cards: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Bookings:
    version: int = 0
    reservations: tuple[Reservation, ...] = ()
    drivers: Mapping[str, Driver] = field(default_factory=dict)

    def reservation(self, reservation_id: str) -> Reservation | None:
        return next((r for r in self.reservations if r.id == reservation_id), None)

    def driver_of_card(self, card: str) -> Driver | None:
        return next((d for d in self.drivers.values() if card in d.cards), None)

    def is_strong(self, card: str) -> bool:
        """Is this card registered as strong (to anyone)? Then its IDm alone opens nothing."""
        return any(card in d.strong_cards for d in self.drivers.values())

    def of_driver(self, driver_id: str) -> list[Reservation]:
        return sorted((r for r in self.reservations if r.driver_id == driver_id), key=_start)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "reservations": [
                {"id": r.id, "driver_id": r.driver_id, "start": r.start, "end": r.end}
                for r in sorted(self.reservations, key=_start)
            ],
            "drivers": [_driver_dict(d) for d in sorted(self.drivers.values(), key=lambda d: d.id)],
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Bookings:
        """A snapshot as the cloud sends it; raises ValueError naming the bad field."""
        try:
            reservations = tuple(_reservation(r) for r in data.get("reservations", []))
            drivers = {d.id: d for d in (_driver(x) for x in data.get("drivers", []))}
            version = int(data.get("version", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bookings: {exc}") from None
        for r in reservations:
            if r.end <= r.start:
                raise ValueError(f"bookings: reservation {r.id} ends before it starts")
            if r.driver_id not in drivers:
                raise ValueError(f"bookings: reservation {r.id} names unknown driver {r.driver_id}")
        return Bookings(version, reservations, drivers)


def _start(r: Reservation) -> float:
    return r.start


def _reservation(r: Mapping[str, Any]) -> Reservation:
    return Reservation(str(r["id"]), str(r["driver_id"]), float(r["start"]), float(r["end"]))


def _driver(d: Mapping[str, Any]) -> Driver:
    expiry = str(d["licence_expiry"])
    dt.date.fromisoformat(expiry)  # refuse a malformed date here, not at the tap
    cards: Iterable[str] = d.get("cards", [])
    strong: Iterable[str] = d.get("strong_cards", [])
    driver = Driver(
        str(d["id"]), expiry, frozenset(str(c) for c in cards), frozenset(str(c) for c in strong)
    )
    if not driver.strong_cards <= driver.cards:
        raise ValueError(f"driver {driver.id}: a strong card is not among its cards")
    return driver


def _driver_dict(d: Driver) -> dict[str, Any]:
    out: dict[str, Any] = {"id": d.id, "licence_expiry": d.licence_expiry, "cards": sorted(d.cards)}
    if d.strong_cards:  # absent when there are none: older snapshots stay as they were
        out["strong_cards"] = sorted(d.strong_cards)
    return out


def card_window(r: Reservation, timing: Timing) -> tuple[float, float]:
    """When a tap may start the trip (U-START-2): from start−14 min for 45 min, not past the end."""
    opens = r.start - timing.start_early
    return opens, min(opens + timing.reader_window, r.end)


def remote_window(r: Reservation, timing: Timing) -> tuple[float, float]:
    """When a remote start is possible (U-START-1, U-START-5): from start−14 min to the end."""
    return r.start - timing.start_early, r.end


def within(window: tuple[float, float], now: float) -> bool:
    return window[0] <= now < window[1]


def licence_valid(driver: Driver, now: float, timezone: str) -> bool:
    """U-LIC-1: valid through its expiry day, in the car's local time."""
    today = dt.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(timezone)).date()
    return today <= dt.date.fromisoformat(driver.licence_expiry)

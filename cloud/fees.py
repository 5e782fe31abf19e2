"""Fees (SPEC §2 F-*): the time fee with packs, cancellation, overtime, distance, fuel discount,
and a trip's invoice. Pure functions of the policy and the facts; amounts are whole yen.

Functions that take a `Policy` and no car use it as it is (pass `policy.for_kind(car.kind)` for a
car of a kind with its own fees); `invoice` and the booking checks take the car and do that
themselves.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from collections.abc import Iterable
from dataclasses import dataclass

from cloud.decision import duration_en, duration_ja
from cloud.model import Car, Refuel, Reservation, aware, utc
from cloud.policy import CancelTier, Pack, Policy


@dataclass(frozen=True)
class TimeFee:
    """F-TIME-1: the cheapest cover of a duration by packs and units."""

    yen: int
    units: int  # loose units (fees.unit each) charged
    packs: tuple[tuple[Pack, int], ...]  # each pack used and how many times, longest first

    def describe(self, unit: dt.timedelta) -> tuple[str, str]:
        """The combination in words, e.g. ("3時間パック×1 + 15分×2", "3 hour pack x1 + ...")."""
        ja = [f"{duration_ja(p.length)}パック×{n}" for p, n in self.packs]
        en = [f"pack of {duration_en(p.length)} x{n}" for p, n in self.packs]
        if self.units or not self.packs:
            ja.append(f"{duration_ja(unit)}×{self.units}")
            en.append(f"{duration_en(unit)} x{self.units}")
        return " + ".join(ja), " + ".join(en)


def units_in(duration: dt.timedelta, unit: dt.timedelta) -> int:
    """How many `unit`s it takes to cover `duration` (rounded up; none for no time)."""
    if duration <= dt.timedelta(0):
        return 0
    return -(-duration // unit)


def time_fee(policy: Policy, duration: dt.timedelta) -> TimeFee:
    """F-TIME-1: the cheapest combination of units and packs, any number of each, covering
    `duration` (so 48 h is two 24 h packs, and 9 h three 3 h packs rather than 8 h + 4 units)."""
    fees = policy.fees
    packs = tuple((p.length // fees.unit, p.yen) for p in fees.packs)
    yen, units, counts = _cheapest(fees.unit_yen, packs, units_in(duration, fees.unit))
    used = sorted(
        ((p, n) for p, n in zip(fees.packs, counts, strict=True) if n),
        key=lambda pn: pn[0].length,
        reverse=True,
    )
    return TimeFee(yen=yen, units=units, packs=tuple(used))


@functools.lru_cache(maxsize=4096)
def _cheapest(
    unit_yen: int, packs: tuple[tuple[int, int], ...], n: int
) -> tuple[int, int, tuple[int, ...]]:
    """Unbounded covering knapsack: best[k] is the cheapest way to cover at least k units.

    A greedy choice (biggest pack first) is wrong here (9 h), so every k up to n is solved from
    the smaller ones; `last[k]` remembers the item that gave best[k] (-1: one unit)."""
    best = [0] * (n + 1)
    last = [-1] * (n + 1)
    for k in range(1, n + 1):
        best[k] = best[k - 1] + unit_yen
        for i, (length, yen) in enumerate(packs):
            cost = best[max(0, k - length)] + yen
            if cost < best[k]:
                best[k], last[k] = cost, i
    units, counts, k = 0, [0] * len(packs), n
    while k > 0:
        if last[k] < 0:
            units, k = units + 1, k - 1
        else:
            counts[last[k]] += 1
            k = max(0, k - packs[last[k]][0])
    return best[n], units, tuple(counts)


def reservation_fee(policy: Policy, start: dt.datetime, end: dt.datetime) -> TimeFee:
    """F-TIME-1, F-EARLY-1: the time fee of a reservation is that of its reserved time, however
    early the car comes back; the minutes before the start are free."""
    aware(start, "start")
    aware(end, "end")
    return time_fee(policy, utc(end) - utc(start))


def cancel_tier(policy: Policy, start: dt.datetime, now: dt.datetime) -> CancelTier | None:
    """C-CAN-1: the tier that applies to cancelling at `now`; None when it can no longer be
    cancelled."""
    aware(start, "start")
    aware(now, "now")
    for tier in policy.cancel.tiers:
        if tier.deadline is None or tier.deadline.met(start, now, policy.zone):
            return tier
    return None


def cancellation_fee(policy: Policy, reservation: Reservation, now: dt.datetime) -> int | None:
    """F-CAN-1: the tier's percentage of the time fee (rounded down to the yen); None when the
    reservation can no longer be cancelled at `now`."""
    tier = cancel_tier(policy, reservation.start, now)
    if tier is None:
        return None
    return reservation_fee(policy, reservation.start, reservation.end).yen * tier.percent // 100


def is_late(policy: Policy, end: dt.datetime, returned_at: dt.datetime) -> bool:
    """A return after the (extended) end, beyond the grace, is late: an unauthorised extension
    (C-PEN-1, F-OVER-1)."""
    aware(end, "end")
    aware(returned_at, "returned_at")
    return returned_at > utc(end) + policy.overtime.grace


def overtime_fee(policy: Policy, end: dt.datetime, returned_at: dt.datetime) -> tuple[int, int]:
    """F-OVER-1: (overtime units, yen): the time fee from the reserved end to the actual return,
    in overtime units rounded up (with packs only if `overtime.packs`), times the factor.
    Nothing when the return is not late."""
    if not is_late(policy, end, returned_at):
        return 0, 0
    over = policy.overtime
    units = units_in(utc(returned_at) - utc(end), over.unit)
    charged = units * over.unit
    if over.packs:
        base = time_fee(policy, charged).yen
    else:
        base = units_in(charged, policy.fees.unit) * policy.fees.unit_yen
    return units, base * over.factor_percent // 100


def distance_fee(policy: Policy, km: float) -> tuple[int, int]:
    """F-DIST-1: (charged km, yen). Part kilometres are rounded as `fees.km_rounding` says."""
    if km < 0:
        raise ValueError(f"distance: cannot be negative, got {km}")
    mode = {
        "down": decimal.ROUND_FLOOR,
        "up": decimal.ROUND_CEILING,
        "nearest": decimal.ROUND_HALF_UP,
    }[policy.fees.km_rounding]
    whole = int(decimal.Decimal(str(km)).to_integral_value(rounding=mode))
    return whole, whole * policy.fees.per_km_yen


def fuel_discount(policy: Policy, refuels: Iterable[Refuel]) -> tuple[int, int]:
    """F-FUEL-1: (qualifying refuels, yen off): each refuel of at least `fuel.min_litres` with
    the car's fuel card earns `fuel.discount_yen`."""
    fuel = policy.fuel
    count = sum(1 for r in refuels if r.fuel_card and r.litres >= fuel.min_litres)
    return count, count * fuel.discount_yen


@dataclass(frozen=True)
class InvoiceLine:
    """One line of a trip's invoice. `code`: time, distance, overtime, penalty, fuel_discount."""

    code: str
    label_ja: str
    label_en: str
    yen: int


@dataclass(frozen=True)
class Invoice:
    reservation_id: str
    lines: tuple[InvoiceLine, ...]
    total: int


def invoice(
    policy: Policy,
    car: Car,
    reservation: Reservation,
    *,
    distance_km: float = 0.0,
    refuels: Iterable[Refuel] = (),
) -> Invoice:
    """A finished trip's invoice: the time fee of the reserved time (F-TIME-1, F-EARLY-1), the
    distance (F-DIST-1), overtime and the unauthorised-extension charge when returned late
    (F-OVER-1), and the fuel discount (F-FUEL-1), which never takes the total below zero.

    A reservation that was never started (a no-show) is billed its time fee only; one that was
    started must have been returned."""
    if car.id != reservation.car_id:
        raise ValueError(f"invoice: car {car.id} is not the car of reservation {reservation.id}")
    if reservation.started_at is not None and reservation.returned_at is None:
        raise ValueError(f"invoice: reservation {reservation.id} has not been returned yet")
    p = policy.for_kind(car.kind)
    tf = reservation_fee(p, reservation.start, reservation.end)
    ja, en = tf.describe(p.fees.unit)
    lines = [InvoiceLine("time", f"時間料金（{ja}）", f"Time ({en})", tf.yen)]
    if reservation.started_at is not None:
        km, yen = distance_fee(p, distance_km)
        if p.fees.per_km_yen:
            lines.append(
                InvoiceLine("distance", f"距離料金（{km} km）", f"Distance ({km} km)", yen)
            )
    if reservation.returned_at is not None and is_late(p, reservation.end, reservation.returned_at):
        units, yen = overtime_fee(p, reservation.end, reservation.returned_at)
        late = units * p.overtime.unit
        if yen:
            lines.append(
                InvoiceLine(
                    "overtime",
                    f"超過料金（{duration_ja(late)}、時間料金の{p.overtime.factor_percent}%）",
                    f"Overtime ({duration_en(late)} at {p.overtime.factor_percent}% of the "
                    "time fee)",
                    yen,
                )
            )
        if p.overtime.unauthorised_yen:
            lines.append(
                InvoiceLine(
                    "penalty",
                    "無断延長料金",
                    "Unauthorised extension",
                    p.overtime.unauthorised_yen,
                )
            )
    count, off = fuel_discount(p, refuels)
    if off:
        off = min(off, sum(line.yen for line in lines))
        lines.append(
            InvoiceLine(
                "fuel_discount", f"給油割引（{count}回）", f"Refuel discount ({count})", -off
            )
        )
    return Invoice(reservation.id, tuple(lines), sum(line.yen for line in lines))

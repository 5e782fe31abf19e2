"""Fees of SPEC §2 (F-*) under the car-sharing guide's policy, against a brute-force reference."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.fees import (
    cancellation_fee,
    distance_fee,
    fuel_discount,
    invoice,
    overtime_fee,
    time_fee,
)
from cloud.model import Car, Refuel, Reservation, Status
from cloud.policy import Pack, default_policy, policy_from_dict

TOKYO = ZoneInfo("Asia/Tokyo")
P = default_policy()
CAR = Car("car-1")
MIN15 = dt.timedelta(minutes=15)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TOKYO)


def brute_force(unit_yen: int, packs: list[tuple[int, int]], n: int) -> int:
    """Every combination of pack counts (stopping once covered), the rest in single units."""
    best = n * unit_yen

    def walk(i: int, covered: int, cost: int) -> None:
        nonlocal best
        if i == len(packs):
            best = min(best, cost + max(0, n - covered) * unit_yen)
            return
        length, yen = packs[i]
        count = 0
        while True:
            walk(i + 1, covered + count * length, cost + count * yen)
            if covered + count * length >= n:
                return
            count += 1

    walk(0, 0, 0)
    return best


def with_fees(unit_yen: int, packs: list[tuple[int, int]]):
    fees = dataclasses.replace(
        P.fees,
        unit_yen=unit_yen,
        packs=tuple(Pack(length * P.fees.unit, yen) for length, yen in packs),
    )
    return dataclasses.replace(P, fees=fees)


def consistent(policy, fee, duration):
    """The combination returned adds up to the fee and covers the duration."""
    covered = fee.units * policy.fees.unit + sum(
        (p.length * n for p, n in fee.packs), dt.timedelta()
    )
    paid = fee.units * policy.fees.unit_yen + sum(p.yen * n for p, n in fee.packs)
    return covered >= duration and paid == fee.yen


# --- F-TIME-1 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "yen"),
    [
        ("30m", 300),
        ("1h", 600),
        ("2h30m", 1500),  # 10 units = 1,500 = one 3 h pack
        ("2h45m", 1500),  # a pack covering more is cheaper than 11 units
        ("3h", 1500),
        ("7h", 3600),  # 3 h + 3 h + 4 units
        ("8h", 3980),
        ("9h", 4500),  # three 3 h packs, not 8 h + 4 units (4,580): greedy would be wrong
        ("12h", 5180),
        ("20h", 7280),  # a 24 h pack covers it
        ("24h", 7280),
        ("25h", 7880),  # 24 h + 4 units
        ("48h", 14560),  # two 24 h packs
        ("72h", 21840),  # three 24 h packs
    ],
)
def test_the_time_fee_is_the_cheapest_cover_by_units_and_packs(duration, yen):
    # SPEC F-TIME-1
    hours, _, minutes = duration.partition("h") if "h" in duration else ("0", "", duration)
    d = dt.timedelta(hours=int(hours), minutes=int(minutes.removesuffix("m") or 0))
    fee = time_fee(P, d)
    assert fee.yen == yen
    assert consistent(P, fee, d)


def test_every_bookable_length_against_the_brute_force():
    # SPEC F-TIME-1: every 15-minute length from 30 minutes to 72 hours
    packs = [(p.length // MIN15, p.yen) for p in P.fees.packs]
    for n in range(2, 72 * 4 + 1):
        fee = time_fee(P, n * MIN15)
        assert fee.yen == brute_force(P.fees.unit_yen, packs, n), n
        assert consistent(P, fee, n * MIN15), n


@settings(max_examples=300, deadline=None)
@given(
    unit_yen=st.integers(1, 500),
    packs=st.lists(st.tuples(st.integers(2, 30), st.integers(1, 6000)), max_size=3),
    n=st.integers(0, 120),
)
def test_any_table_of_packs_against_the_brute_force(unit_yen, packs, n):
    # SPEC F-TIME-1: any number of each pack and unit, any prices
    policy = with_fees(unit_yen, packs)
    fee = time_fee(policy, n * MIN15)
    assert fee.yen == brute_force(unit_yen, packs, n)
    assert consistent(policy, fee, n * MIN15)


def test_a_part_unit_is_charged_as_a_whole_unit():
    # SPEC F-TIME-1: time is counted in started 15-minute units
    assert time_fee(P, dt.timedelta(minutes=16)).yen == 300
    assert time_fee(P, dt.timedelta(0)).yen == 0


def test_the_combination_is_described_for_the_invoice():
    # SPEC F-TIME-1: the invoice names the packs and units applied
    fee = time_fee(P, dt.timedelta(hours=3, minutes=30))
    assert fee.describe(P.fees.unit) == (
        "3時間パック×1 + 15分×2",
        "pack of 3 hours x1 + 15 minutes x2",
    )


# --- F-DIST-1 -------------------------------------------------------------------------------


def test_distance_is_20_yen_per_whole_km():
    # SPEC F-DIST-1
    assert distance_fee(P, 42.7) == (42, 840)
    assert distance_fee(P, 0) == (0, 0)
    assert distance_fee(P, 100) == (100, 2000)
    up = dataclasses.replace(P, fees=dataclasses.replace(P.fees, km_rounding="up"))
    assert distance_fee(up, 42.1) == (43, 860)
    with pytest.raises(ValueError, match="negative"):
        distance_fee(P, -1)


# --- F-OVER-1 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returned", "units", "yen"),
    [
        ("12:00", 0, 0),
        ("12:00:01", 1, 300),  # twice 150, rounded up to a unit
        ("12:15", 1, 300),
        ("12:15:01", 2, 600),
        ("15:00", 12, 3600),  # units, not packs (overtime.packs = false)
    ],
)
def test_overtime_is_twice_the_time_fee_in_15_minute_units_rounded_up(returned, units, yen):
    # SPEC F-OVER-1
    assert overtime_fee(P, at("2025-01-10 12:00"), at(f"2025-01-10 {returned}")) == (units, yen)


def test_overtime_with_packs_and_a_grace_when_the_policy_says_so():
    # SPEC F-OVER-1: the doubled time fee may use packs; a grace is a policy value (0 by default)
    packs = dataclasses.replace(P, overtime=dataclasses.replace(P.overtime, packs=True))
    assert overtime_fee(packs, at("2025-01-10 12:00"), at("2025-01-10 15:00")) == (12, 3000)
    grace = dataclasses.replace(
        P, overtime=dataclasses.replace(P.overtime, grace=dt.timedelta(minutes=5))
    )
    assert overtime_fee(grace, at("2025-01-10 12:00"), at("2025-01-10 12:05")) == (0, 0)
    assert overtime_fee(grace, at("2025-01-10 12:00"), at("2025-01-10 12:06")) == (1, 300)


# --- F-CAN-1 --------------------------------------------------------------------------------


def test_the_cancellation_fee_is_the_tiers_share_of_the_time_fee_rounded_down():
    # SPEC F-CAN-1, C-CAN-1
    r = Reservation(
        "r", "car-1", "D0000000001", "M0000001", at("2025-01-10 12:00"), at("2025-01-10 12:45")
    )
    odd = dataclasses.replace(P, fees=dataclasses.replace(P.fees, unit_yen=151))
    assert cancellation_fee(odd, r, at("2025-01-10 11:00")) == 0
    assert cancellation_fee(odd, r, at("2025-01-10 11:30")) == 226  # 50 % of 453
    assert cancellation_fee(odd, r, at("2025-01-10 12:01")) == 453


# --- F-FUEL-1 -------------------------------------------------------------------------------


def test_a_refuel_of_20_litres_or_more_with_the_fuel_card_earns_200_yen():
    # SPEC F-FUEL-1: 1回あたりの給油量が20リットル以上の場合に限り200円
    assert fuel_discount(P, [Refuel(20)]) == (1, 200)
    assert fuel_discount(P, [Refuel(19.9)]) == (0, 0)
    assert fuel_discount(P, [Refuel(25), Refuel(30)]) == (2, 400)
    assert fuel_discount(P, [Refuel(40, fuel_card=False)]) == (0, 0)  # advance payment


# --- the invoice ----------------------------------------------------------------------------


def trip(start, end, *, started, returned):
    return Reservation(
        "trip",
        "car-1",
        "D0000000001",
        "M0000001",
        at(start),
        at(end),
        Status.COMPLETED,
        started_at=at(started),
        returned_at=at(returned),
    )


def test_an_invoice_on_time_has_time_distance_and_fuel_lines():
    # SPEC F-TIME-1, F-DIST-1, F-FUEL-1
    r = trip(
        "2025-01-10 10:00",
        "2025-01-10 19:00",
        started="2025-01-10 09:55",
        returned="2025-01-10 18:50",
    )
    inv = invoice(P, CAR, r, distance_km=57.4, refuels=[Refuel(22.5)])
    assert [(line.code, line.yen) for line in inv.lines] == [
        ("time", 4500),
        ("distance", 1140),
        ("fuel_discount", -200),
    ]
    assert inv.total == 5440
    assert "3時間パック×3" in inv.lines[0].label_ja and "57 km" in inv.lines[1].label_en


def test_early_return_pays_the_reserved_time_and_the_early_start_is_free():
    # SPEC F-EARLY-1: started 14 minutes early, back 2 hours early
    r = trip(
        "2025-01-10 10:00",
        "2025-01-10 13:00",
        started="2025-01-10 09:46",
        returned="2025-01-10 11:00",
    )
    assert invoice(P, CAR, r).total == 1500


def test_a_late_return_adds_overtime_and_the_unauthorised_extension_charge():
    # SPEC F-OVER-1: 超過料金 + 1回につき3,000円の無断延長料金
    r = trip(
        "2025-01-10 10:00",
        "2025-01-10 12:00",
        started="2025-01-10 10:00",
        returned="2025-01-10 12:40",
    )
    inv = invoice(P, CAR, r, distance_km=10)
    assert [(line.code, line.yen) for line in inv.lines] == [
        ("time", 1200),
        ("distance", 200),
        ("overtime", 900),  # 40 minutes -> 3 units x 150 x 2
        ("penalty", 3000),
    ]
    assert inv.total == 5300
    assert "45分" in inv.lines[2].label_ja


def test_the_fuel_discount_never_takes_the_total_below_zero():
    # SPEC F-FUEL-1
    r = trip(
        "2025-01-10 10:00",
        "2025-01-10 10:30",
        started="2025-01-10 10:00",
        returned="2025-01-10 10:30",
    )
    inv = invoice(P, CAR, r, refuels=[Refuel(30)] * 3)
    assert inv.lines[-1].yen == -300 and inv.total == 0


def test_a_no_show_pays_its_time_fee_and_a_running_trip_has_no_invoice_yet():
    # SPEC F-CAN-1 (100 % after the start)
    no_show = Reservation(
        "n", "car-1", "D0000000001", "M0000001", at("2025-01-10 10:00"), at("2025-01-10 11:00")
    )
    assert invoice(P, CAR, no_show).total == 600
    running = dataclasses.replace(no_show, status=Status.IN_USE, started_at=at("2025-01-10 10:00"))
    with pytest.raises(ValueError, match="not been returned"):
        invoice(P, CAR, running)
    with pytest.raises(ValueError, match="not the car"):
        invoice(P, Car("car-2"), no_show)


def test_a_car_kind_with_its_own_fees_is_billed_by_them():
    # SPEC F-TIME-1: per-class tables (料金表 車両クラス) through [kinds.<kind>]
    data = tomllib.loads(Path("cloud/policies/carshare.toml").read_text(encoding="utf-8"))
    data["kinds"] = {"van": {"fees": {"unit_yen": 200, "packs": [{"length": "3h", "yen": 2000}]}}}
    policy = policy_from_dict(data)
    r = trip(
        "2025-01-10 10:00",
        "2025-01-10 13:00",
        started="2025-01-10 10:00",
        returned="2025-01-10 13:00",
    )
    assert invoice(policy, Car("car-1", kind="van"), r).total == 2000
    assert invoice(policy, Car("car-1"), r).total == 1500

"""Overtime: the trip runs past its end, the car carries on, and the late return is billed and
penalised by the cloud."""

from __future__ import annotations

import datetime as dt

import pytest

from cloud.demo import CAR
from hil_tests.steps import (
    ALICE,
    BOB,
    SCENARIO,
    advance_to,
    events_of,
    get_in_and_drive,
    park_at_station,
    reserve,
    start_by_card,
    wait_event,
    wait_immobilised,
    wait_mail,
    wait_phone_status,
)
from tools.rig.car import Rig
from tools.rig.phone import Refusal

pytestmark = pytest.mark.needs(*SCENARIO)

MIN = dt.timedelta(minutes=1)
# The guide's fee table (SPEC F-TIME-1, F-DIST-1, F-OVER-1; cloud/policies/carshare.toml), by hand
UNIT_YEN = 150  # per 15 minutes
PER_KM_YEN = 20
OVERTIME_FACTOR = 2  # overtime costs twice the time fee, in 15-minute units rounded up
UNAUTHORISED_YEN = 3000  # per unauthorised extension


def test_a_late_return_runs_on_normally_and_is_billed_with_overtime_and_penalty(rig: Rig) -> None:
    # SPEC U-USE-4, X-SAFE-1, F-OVER-1, F-TIME-1, F-DIST-1, C-PEN-1, N-MAIL-1
    rig.park()
    bob = reserve(rig, BOB, minutes=60)
    start_by_card(rig, bob)
    get_in_and_drive(rig, km=12.0)  # engine running, brake off, key out: in use
    wait_immobilised(rig, False)

    # the end passes with the engine running: the car reports overtime and says so, once
    mark = rig.mark()
    advance_to(rig, bob.end - 1 * MIN)
    assert rig.status()["trip"]["overtime_reported"] is False
    advance_to(rig, bob.end)
    rig.wait_since(mark, "the overtime prompt", prompts=["overtime"])
    (overtime,) = wait_event(rig, "overtime")
    assert overtime["data"]["reservation_id"] == bob.id
    assert overtime["data"]["end"] == bob.end.timestamp()

    # …and keeps working normally: never locked out, never immobilised (U-USE-4, X-SAFE-1)
    late = 37 * MIN
    advance_to(rig, bob.end + late)
    seen = rig.outputs
    assert (seen["state"], seen["immobilised"]) == ("in_use", False)
    assert rig.since(mark)["locks"] == 0 and rig.since(mark)["unlocks"] == 0
    assert rig.since(mark)["prompts"].count("overtime") == 1
    assert wait_phone_status(bob, "in_use")

    # the driver comes back 37 minutes late and ends the trip by card
    park_at_station(rig)
    assert rig.outputs["led"] == "orange_blink"
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "forgotten_item_window"
    rig.wait_since(mark, "the lock and hazard ×1", locks=1, hazard_blinks=1, prompts=["end_ok"])
    (ended,) = wait_event(rig, "trip_ended")
    assert ended["data"]["overtime_s"] == late.total_seconds()

    # the invoice on the phone: the guide's table, worked out by hand
    wait_phone_status(bob, "completed")
    (invoice,) = [i for i in bob.phone.invoices() if i["reservation_id"] == bob.id]
    lines = {line["code"]: line["yen"] for line in invoice["lines"]}
    late_units = -(-late // dt.timedelta(minutes=15))  # 37 minutes are 3 units, rounded up
    assert late_units == 3
    assert lines == {
        "time": 4 * UNIT_YEN,  # the reserved hour: 4 × 15 minutes, cheaper than any pack
        "distance": 12 * PER_KM_YEN,
        "overtime": late_units * UNIT_YEN * OVERTIME_FACTOR,  # 900
        "penalty": UNAUTHORISED_YEN,  # returned late without extending
    }
    assert invoice["total_yen"] == 600 + 240 + 900 + 3000
    mail = wait_mail(rig, "利用終了受付", bob.email)
    assert f"{invoice['total_yen']:,}円" in mail

    # C-PEN-1: a first unauthorised extension limits the member (all its drivers) to one open
    # reservation for the next calendar month
    today = rig.now.date()
    next_month = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    first = dt.datetime.combine(next_month + dt.timedelta(days=4), dt.time(10), rig.now.tzinfo)
    bob.phone.reserve(CAR, first, first + dt.timedelta(hours=1))
    second = first + dt.timedelta(days=1)
    with pytest.raises(Refusal) as refused:
        rig.phone(ALICE).reserve(CAR, second, second + dt.timedelta(hours=1))
    last_day = (next_month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    assert refused.value.code == "penalty_limit"
    assert f"at most 1 open reservation(s) until {last_day.isoformat()}" in str(refused.value)
    assert events_of(rig, "trip_ended") == [ended]

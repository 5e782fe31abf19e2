"""The car unit loses power (SIGKILL) mid-trip and comes back: the trip, its timers and its
unsent events carry on as if nothing had happened."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from hil_tests.steps import (
    BOB,
    SCENARIO,
    advance_to,
    cloud_events,
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
from tools.rig.wait import wait_for

pytestmark = pytest.mark.needs(*SCENARIO)

MIN = dt.timedelta(minutes=1)


def trip_view(status: dict[str, object]) -> tuple[object, ...]:
    """What must survive a power cut: the state, the trip, the timers."""
    return status["state"], status["overlay"], status["trip"], status["deadlines"]


@pytest.mark.needs("power_cut")
def test_a_power_cut_mid_trip_loses_nothing_and_the_trip_goes_on(rig: Rig) -> None:
    # SPEC U-DATA-1, X-SAFE-1, S-SYNC-2, U-END-2, U-END-3, N-MAIL-1
    rig.park()
    bob = reserve(rig, BOB, minutes=120)
    start_by_card(rig, bob)
    get_in_and_drive(rig, km=3.0)  # in use: key out, engine running
    wait_immobilised(rig, False)
    before = rig.status()
    assert before["state"] == "in_use"
    doors = rig.outputs["doors"]

    mark = rig.mark()
    rig.power_cut()
    assert rig.car_outputs.level("immobiliser") is False  # the board holds it: the engine runs on
    rig.power_on()

    after = rig.status()
    assert trip_view(after) == trip_view(before)
    assert after["sensors"]["key_present"] is False and after["sensors"]["engine"] is True
    wait_immobilised(rig, False)
    seen = rig.outputs
    assert (seen["state"], seen["doors"], seen["immobilised"]) == ("in_use", doors, False)
    assert rig.since(mark, settle=0.2) == {
        "unlocks": 0,
        "locks": 0,
        "hazard_blinks": 0,
        "prompts": [],
    }

    # the trip goes on, and the driver ends it as usual
    rig.advance(minutes=30)
    rig.drive(4.0)
    assert rig.state == "in_use"
    park_at_station(rig)
    assert rig.outputs["led"] == "orange_blink"
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "forgotten_item_window"
    rig.wait_since(mark, "the lock and hazard ×1", locks=1, hazard_blinks=1, prompts=["end_ok"])

    # every event reached the cloud, none lost, none twice
    last = rig.status()["outbox"]["last_seq"]
    wait_for(lambda: len(cloud_events(rig)) == last, f"the cloud to hold the car's {last} events")
    events = cloud_events(rig)
    assert [e["seq"] for e in events] == list(range(1, last + 1))
    kinds = Counter(e["type"] for e in events)
    assert [kinds[k] for k in ("trip_started", "key_taken", "key_returned", "trip_ended")] == [
        1,
        1,
        1,
        1,
    ]
    wait_phone_status(bob, "completed")
    (invoice,) = [i for i in bob.phone.invoices() if i["reservation_id"] == bob.id]
    distance = [line["label_en"] for line in invoice["lines"] if line["code"] == "distance"]
    assert distance == ["Distance (7 km)"]  # 3 km before the cut, 4 after
    wait_mail(rig, "利用終了受付", bob.email)


@pytest.mark.needs("power_cut")
def test_a_power_cut_right_after_the_unlock_keeps_the_one_minute_timer(rig: Rig) -> None:
    # SPEC U-DATA-1, U-SEC-1, U-START-4
    bob = reserve(rig, BOB)
    start_by_card(rig, bob)
    unlocked_at = rig.now
    before = rig.status()
    assert before["deadlines"]["door"] == (unlocked_at + MIN).timestamp()
    rig.advance(seconds=20)  # the timers run; no door is opened

    mark = rig.mark()
    rig.power_cut()
    rig.power_on()
    after = rig.status()
    assert trip_view(after)[:3] == trip_view(before)[:3]
    # the timers kept their times: not restarted by the power-on
    assert after["deadlines"]["door"] == before["deadlines"]["door"]
    assert after["deadlines"]["key"] == before["deadlines"]["key"]
    # U-DATA-1: the outputs of the state go out again: doors unlocked, engine immobilised
    rig.wait_since(mark, "the doors unlocked again", unlocks=1)
    wait_immobilised(rig, True)
    assert rig.outputs["doors"] == "unlocked"

    advance_to(rig, unlocked_at + MIN - dt.timedelta(seconds=1))
    assert rig.state == "unlocked"
    advance_to(rig, unlocked_at + 2 * MIN)  # past it: it fires at its own time
    rig.wait_since(mark, "the security lock", locks=1, prompts=["security_locked"])
    seen = rig.outputs
    assert (seen["state"], seen["doors"], seen["immobilised"]) == (
        "security_locked",
        "locked",
        True,
    )
    (locked,) = wait_event(rig, "security_locked")
    assert (locked["data"]["reason"], locked["data"]["at"]) == (
        "no_door_opened",
        (unlocked_at + MIN).timestamp(),
    )

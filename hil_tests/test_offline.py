"""A car without signal through a whole trip: it serves the reservation it holds, and everything
it did reaches the cloud, once and in order, when the signal is back."""

from __future__ import annotations

import datetime as dt

import pytest

from hil_tests.steps import (
    BOB,
    SCENARIO,
    advance_to,
    car_online,
    cloud_events,
    get_in_and_drive,
    park_at_station,
    reserve,
    start_by_card,
    wait_mail,
    wait_phone_status,
)
from tools.rig.car import Rig
from tools.rig.phone import Refusal
from tools.rig.wait import wait_for

pytestmark = pytest.mark.needs(*SCENARIO)

MIN = dt.timedelta(minutes=1)
TRIP = ["trip_started", "key_taken", "key_returned", "trip_ended", "forgotten_window_closed"]


def test_a_trip_made_without_signal_reaches_the_cloud_once_and_in_order(rig: Rig) -> None:
    # SPEC S-SYNC-2, S-SYNC-1, U-START-4, U-END-3, U-FGT-1, N-MAIL-1
    rig.park()
    bob = reserve(rig, BOB, minutes=60)  # the car holds it before it loses the signal
    rig.cut_signal()
    wait_for(lambda: car_online(rig) is False, "the cloud to see the car offline")
    assert rig.status()["cloud"]["connected"] is False

    # the whole trip at the car, by card: no network needed
    start_by_card(rig, bob)
    get_in_and_drive(rig, km=8.0)
    advance_to(rig, bob.end - 15 * MIN)
    park_at_station(rig)
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "forgotten_item_window"
    rig.wait_since(mark, "the lock and hazard ×1", locks=1, hazard_blinks=1, prompts=["end_ok"])
    advance_to(rig, bob.end - 5 * MIN)  # the forgotten-item window runs out
    assert rig.state == "idle"

    # the phone meanwhile shows nothing new, and says why it cannot reach the car
    assert wait_phone_status(bob, "reserved")
    assert [i for i in bob.phone.invoices() if i["reservation_id"] == bob.id] == []
    assert not any("利用終了受付" in s for s in rig.mails.subjects(bob.email))
    with pytest.raises(Refusal) as refused:
        bob.phone.operate(bob.id, "reunlock")
    assert (refused.value.status, refused.value.code) == (503, "car_offline")

    # what the car did is waiting in its outbox, in order
    pending = rig.unit.saved()["outbox"]
    ours = [e["type"] for e in pending if e["type"] in TRIP]
    assert ours == TRIP
    assert all(e["data"].get("reservation_id") == bob.id for e in pending if e["type"] in TRIP)
    # (an event the cloud had already, whose PUBACK came just before the cut, waits too: the
    # car cannot know it was kept, so it sends it again and the cloud must not apply it twice)
    before = {e["id"]: e for e in cloud_events(rig)}
    assert not [e for e in pending if e["id"] in before and e["type"] in TRIP]

    rig.restore_signal()
    wanted = [e["id"] for e in pending]
    wait_for(
        lambda: {e["id"] for e in cloud_events(rig)} >= set(wanted),
        "every event of the offline trip to reach the cloud",
    )
    events = cloud_events(rig)
    arrived = [e for e in events if e["id"] in set(wanted)]
    # once each, in the car's order, each applied by the cloud
    assert [e["id"] for e in arrived] == wanted
    assert all(e == before[e["id"]] for e in arrived if e["id"] in before)  # untouched
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    outcomes = {e["type"]: e["outcome"] for e in arrived}
    assert outcomes["trip_started"] == "applied: trip started"
    assert outcomes["trip_ended"].startswith("applied: trip ended, invoice")

    # the phone now shows the trip, its invoice, and the trip-end mail went out exactly once
    wait_phone_status(bob, "completed")
    (invoice,) = [i for i in bob.phone.invoices() if i["reservation_id"] == bob.id]
    assert {line["code"] for line in invoice["lines"]} == {"time", "distance"}
    mail = wait_mail(rig, "利用終了受付", bob.email)
    assert f"{invoice['total_yen']:,}円" in mail

    # (the mail server has the mail a moment before the cloud records it as sent)
    def notices() -> list[bool]:
        found = rig.cloud.list("notifications", kind="trip_ended", reservation=bob.id)
        return [n["sent_at"] is not None for n in found]

    wait_for(lambda: notices() == [True], "the cloud to record the trip-end mail as sent")
    assert notices() == [True]
    # …and the car lets go of them once the cloud has them
    wait_for(lambda: rig.status()["outbox"]["pending"] == 0, "the car's outbox to empty", 15)
    assert sum(s.count("利用終了受付") for s in rig.mails.subjects(bob.email)) == 1

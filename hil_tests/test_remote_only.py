"""A trip started after the reader went dark: started, and ended, only from the phone."""

from __future__ import annotations

import datetime as dt

import pytest

from hil_tests.steps import (
    BOB,
    SCENARIO,
    advance_to,
    events_of,
    get_in_and_drive,
    only,
    park_at_station,
    reserve,
    wait_event,
    wait_immobilised,
    wait_mail,
    wait_phone_status,
)
from tools.rig.car import Rig

pytestmark = pytest.mark.needs(*SCENARIO)

MIN = dt.timedelta(minutes=1)


def test_after_the_reader_went_dark_the_trip_starts_and_ends_only_remotely(rig: Rig) -> None:
    # SPEC U-START-2, U-START-5, U-END-2, U-END-3, U-FB-1, U-FB-3, S-SYNC-3, X-SAFE-2
    rig.park()
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start + 30 * MIN)
    assert rig.outputs["led"] == "green_blink"  # the last minute of the 45
    advance_to(rig, bob.start + 31 * MIN)  # 45 minutes after it began the reader goes dark
    assert rig.outputs["led"] == "dark"

    # Bob's own card, during his reservation: the reader sends him to the phone
    mark = rig.mark()
    status = rig.tap(BOB)
    assert status["state"] == "idle" and status["trip"] is None
    only(rig, mark, "use_phone")
    assert rig.outputs["doors"] == "locked"

    # U-START-5: the phone still can, until the reservation's end
    mark = rig.mark()
    answer = bob.phone.operate(bob.id, "start")
    assert (answer["ok"], answer["code"]) == (True, "started")
    rig.wait_since(mark, "hazard ×2 and the unlock", unlocks=1, hazard_blinks=2)
    assert (rig.outputs["state"], rig.outputs["doors"]) == ("unlocked", "unlocked")
    wait_phone_status(bob, "in_use")

    get_in_and_drive(rig, km=5.0)
    advance_to(rig, bob.start + 90 * MIN)
    told = len(rig.car_outputs.led_patterns())
    park_at_station(rig)
    assert rig.state == "returning"
    # every end check holds, yet the reader does not blink orange for this trip (U-END-2)
    assert rig.outputs["led"] == "dark"
    assert "orange_blink" not in rig.car_outputs.led_patterns()[told:]

    # …and the card does not end it
    mark = rig.mark()
    assert rig.tap(BOB)["state"] == "returning"
    only(rig, mark, "use_phone")
    assert rig.outputs["immobilised"] is False
    reasons = [e["data"]["reason"] for e in wait_event(rig, "card_denied", 2)]
    assert reasons == ["reader_window_closed", "end_by_phone_only"]
    assert events_of(rig, "trip_ended") == []
    assert wait_phone_status(bob, "in_use")

    # only the phone ends it: lock, hazard ×1, immobilised, the forgotten-item window
    mark = rig.mark()
    answer = bob.phone.operate(bob.id, "end")
    assert (answer["ok"], answer["code"]) == (True, "ended")
    rig.wait_since(mark, "the lock and hazard ×1", locks=1, hazard_blinks=1, prompts=["end_ok"])
    wait_immobilised(rig, True)
    seen = rig.outputs
    assert (seen["state"], seen["doors"]) == ("forgotten_item_window", "locked")
    started, ended = wait_event(rig, "trip_started"), wait_event(rig, "trip_ended")
    assert [e["data"]["by"] for e in started + ended] == ["remote", "remote"]
    wait_phone_status(bob, "completed")
    wait_mail(rig, "利用終了受付", bob.email)  # N-MAIL-1

"""The HIL trips benchmark's measuring functions, on a few trips: they drive whole trips and
return figures a reader of the table can trust (behaviour, not speed: no figure is judged fast
or slow here)."""

from __future__ import annotations

import pytest

from benchmarks.hil_trips import GOAL_S, PATHS, measure, table
from hil_tests.steps import SCENARIO
from tools.rig.car import Rig
from tools.rig.wait import wait_for
from tools.sim.rig import SimRig

pytestmark = pytest.mark.needs(*SCENARIO)


def test_the_benchmark_drives_whole_trips_and_times_each_path(rig: Rig) -> None:
    if not isinstance(rig, SimRig):
        pytest.skip("the benchmark times the sim rig's own parts (its simulated board, its hand)")
    # SPEC U-START-4, U-SEC-4, U-END-3, U-FGT-1: tap → unlock, phone re-unlock, tap → lock,
    # the forgotten-item window lapses; every trip through the real cloud, unit and board
    # U-DATA-1: the unit locks the doors as it starts (once its board link is up)
    wait_for(lambda: rig.doors() == "locked", "the doors locked at start-up")
    mark = rig.mark()
    results = measure(rig, 3)

    assert len(results.trips) == 3 and len(results.reservations) == 3
    for trip in results.trips:
        # every edge came after its card was presented (or its API call sent), within the guide
        for ms in (trip.tap_unlock, trip.phone_unlock, trip.tap_lock):
            assert 0 < ms < GOAL_S * 1000
    for part in (results.floors.reader, results.floors.link, results.floors.broker):
        assert len(part) == 3 and all(0 < ms < GOAL_S * 1000 for ms in part)

    # what the car did, seen on the board and in the cloud: each trip unlocked twice (card,
    # phone) and locked once, and ended for the cloud too
    done = rig.since(mark)
    assert (done["unlocks"], done["locks"]) == (6, 3)
    assert rig.state == "idle"
    phone = rig.phone("XXY00001002")
    wait_for(
        lambda: all(phone.reservation(r)["status"] == "completed" for r in results.reservations),
        "the cloud to hold every trip as ended",
    )

    printed = table(results)
    for name, _, _ in PATHS:
        assert name in printed
    assert "3 trips" in printed and "cores" in printed

"""The operator's commands on a whole car: immobilise refused while the engine runs and accepted
once it stops, and a trip ended on the driver's behalf with a check that cannot pass.

The commands enter at the unit (its service console, as a command from the cloud would after the
signature check): the operator console's route that sends them through the cloud is being built
alongside. Their results and events travel the real way — the unit's outbox, the broker, the
cloud — and are read from the cloud's timeline."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from hil_tests.steps import (
    BOB,
    SCENARIO,
    advance_to,
    events_of,
    get_in_and_drive,
    reserve,
    wait_event,
    wait_immobilised,
)
from tools.rig.car import Rig

pytestmark = pytest.mark.needs(*SCENARIO)

MIN = dt.timedelta(minutes=1)
_ids = itertools.count(1)


def operator_command(rig: Rig, name: str, **args: Any) -> dict[str, Any]:
    """One operator command; its one result (S-SYNC-3)."""
    reply = rig.unit.request(
        {"op": "command", "id": f"op-{next(_ids)}", "name": name, "args": args}
    )
    assert reply["ok"], reply
    results = [e for e in reply["effects"] if e["effect"] == "CommandResult"]
    assert len(results) == 1, reply
    result: dict[str, Any] = results[0]
    return result


def test_immobilise_waits_for_the_engine_and_operator_end_ends_a_trip_with_the_key_lost(
    rig: Rig,
) -> None:
    # SPEC O-CAR-1, X-SAFE-1, U-END-3, U-END-5, S-SYNC-3
    rig.park()
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start)
    assert rig.tap(BOB)["state"] == "unlocked"
    get_in_and_drive(rig, km=3.0)
    assert rig.state == "in_use"

    # the engine runs: the immobiliser is not touched
    refused = operator_command(rig, "immobilise")
    assert (refused["ok"], refused["code"]) == (False, "engine_running")
    assert rig.outputs["immobilised"] is False

    # the engine stops: the operator's hold takes, and the car says so
    rig.engine(False)
    accepted = operator_command(rig, "immobilise")
    assert (accepted["ok"], accepted["code"]) == (True, "immobilised")
    wait_immobilised(rig, True)
    assert rig.status()["operator"]["immobilised"] is True
    wait_event(rig, "operator_immobilised")

    # the key is lost: the driver cannot end, the operator ends for him
    rig.brake(True)
    rig.open_door("driver")
    rig.close_door("driver")
    assert operator_command(rig, "end")["code"] == "end_checks_failed"
    ended = operator_command(rig, "operator_end")
    assert (ended["ok"], ended["code"], ended["data"]["failed"]) == (True, "ended", ["key"])
    assert (rig.outputs["state"], rig.outputs["doors"]) == ("forgotten_item_window", "locked")
    wait_immobilised(rig, True)

    # the cloud's timeline has every outcome, the trip's end by the operator with its failed check
    (trip_ended,) = wait_event(rig, "trip_ended")
    assert (trip_ended["data"]["by"], trip_ended["data"]["failed"]) == ("operator", ["key"])
    assert trip_ended["outcome"].startswith("applied: trip ended"), trip_ended  # and billed
    results = wait_event(rig, "command_result", 4)
    assert [(r["data"]["name"], r["data"]["code"]) for r in results] == [
        ("immobilise", "engine_running"),
        ("immobilise", "immobilised"),
        ("end", "end_checks_failed"),
        ("operator_end", "ended"),
    ]
    assert events_of(rig, "operator_released") == []

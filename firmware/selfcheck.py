"""The unit's self-test on command (O-CAR-1 `self_test`): its own checks, as data, and the report.

`kagi board selftest` (tools/selftest.py) walks a technician through the car's wiring with the unit
stopped; this one runs inside the running unit, from the operator's console, and says whether the
unit holds itself together: the outputs it last commanded agree with its state, nothing that fell
due is left unfired, its state survives a save and restore (U-DATA-1), and its parts (the board
link, the cloud link, as the runner reports them) are up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware.state import TripData


@dataclass(frozen=True)
class Facts:
    """What the checks look at: the core's data and what its state implies right now."""

    data: TripData
    doors: str | None  # what the state implies (None: the driver's business)
    immobilised: bool
    next_due: float | None
    now: float
    parts: dict[str, Any]  # the adapters' status fields, keyed by adapter ("board", "cloud")


def _outputs(f: Facts) -> dict[str, Any]:
    held = f.data.outputs
    engine = f.data.sensors.engine  # X-SAFE-1 holds a lock or immobiliser-on back: not a fault
    doors_ok = f.doors is None or held.doors == f.doors or (f.doors == "locked" and engine)
    immo_ok = held.immobilised == f.immobilised or (f.immobilised and engine)
    return {
        "ok": doors_ok and immo_ok,
        "doors": held.doors,
        "doors_expected": f.doors,
        "immobilised": held.immobilised,
        "immobilised_expected": f.immobilised,
    }


def _deadlines(f: Facts) -> dict[str, Any]:
    return {"ok": f.next_due is None or f.next_due >= f.now, "next_due": f.next_due}


def _state_round_trip(f: Facts) -> dict[str, Any]:
    return {"ok": TripData.from_dict(f.data.to_dict()) == f.data}


def _part(name: str, flag: str) -> Callable[[Facts], dict[str, Any]]:
    def check(f: Facts) -> dict[str, Any]:
        part = f.parts.get(name)
        if not isinstance(part, dict):
            return {"ok": True, "present": False}  # this unit runs without it (a bench, a test)
        return {"ok": part.get(flag) is True, "present": True, flag: part.get(flag)}

    return check


CHECKS: dict[str, Callable[[Facts], dict[str, Any]]] = {
    "outputs": _outputs,
    "deadlines": _deadlines,
    "state_round_trip": _state_round_trip,
    "board_link": _part("board", "up"),
    "cloud_link": _part("cloud", "connected"),
    "reader": _part("reader", "open"),
}


def run(facts: Facts) -> dict[str, Any]:
    """Every check's result (each with `ok`), the sensors as last reported and the time."""
    checks = {name: check(facts) for name, check in CHECKS.items()}
    return {
        "at": facts.now,
        "passed": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "sensors": facts.data.to_dict()["sensors"],
        "operator": facts.data.to_dict()["operator"],
    }

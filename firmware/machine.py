"""The states and transitions of SPEC §1, declared as data for `transitions`.

Two machines share one model: the trip (`state`) and the card-registration overlay (`overlay`),
which can lie over `idle`, `unlocked` and `in_use` without changing the trip. Every trip
transition reports the event named in REPORTS (SPEC §1: every move is an event for the cloud).
"""

from __future__ import annotations

from typing import Any

IDLE = "idle"
UNLOCKED = "unlocked"
IN_USE = "in_use"
RETURNING = "returning"
FORGOTTEN = "forgotten_item_window"
SECURITY_LOCKED = "security_locked"

STATES = [IDLE, UNLOCKED, IN_USE, RETURNING, FORGOTTEN, SECURITY_LOCKED]
TRIP_STATES = [UNLOCKED, IN_USE, RETURNING, SECURITY_LOCKED]  # a trip is running

TRANSITIONS: list[dict[str, Any]] = [
    # U-START-4, U-START-5: a valid tap or remote start unlocks
    {"trigger": "start", "source": IDLE, "dest": UNLOCKED},
    # U-SEC-5: the key leaves the box; U-SEC-3: taking it out again cancels the return timer
    {"trigger": "take_key", "source": [UNLOCKED, RETURNING], "dest": IN_USE},
    # U-SEC-3: the key is put back at 返却 during the trip
    {"trigger": "return_key", "source": IN_USE, "dest": RETURNING},
    # U-SEC-1, U-SEC-2, U-SEC-3
    {"trigger": "security_lock", "source": [UNLOCKED, RETURNING], "dest": SECURITY_LOCKED},
    # U-SEC-4: re-unlock; with the key out the trip goes on in use, else the timers restart
    {"trigger": "reunlock", "source": TRIP_STATES, "dest": IN_USE, "conditions": "key_out"},
    {"trigger": "reunlock", "source": TRIP_STATES, "dest": UNLOCKED},
    # U-END-3
    {"trigger": "end", "source": TRIP_STATES, "dest": FORGOTTEN},
    # U-FGT-2, U-FGT-3, U-FGT-4
    {"trigger": "close_window", "source": FORGOTTEN, "dest": IDLE},
]

# The event each trip transition reports.
REPORTS = {
    "start": "trip_started",
    "take_key": "key_taken",
    "return_key": "key_returned",
    "security_lock": "security_locked",
    "reunlock": "reunlocked",
    "end": "trip_ended",
    "close_window": "forgotten_window_closed",
}

OVERLAY_OFF = "off"
REGISTERING = "registering"
OVERLAY_STATES = [OVERLAY_OFF, REGISTERING]
OVERLAY_TRANSITIONS: list[dict[str, Any]] = [
    # U-CARD-1
    {"trigger": "begin_registration", "source": OVERLAY_OFF, "dest": REGISTERING},
    # U-CARD-2, U-CARD-3 (and the trip leaving the states the overlay may lie over)
    {"trigger": "end_registration", "source": REGISTERING, "dest": OVERLAY_OFF},
]
OVERLAY_ALLOWED = (IDLE, UNLOCKED, IN_USE)


def machine_kwargs() -> dict[str, Any]:
    return {
        "states": STATES,
        "transitions": TRANSITIONS,
        "auto_transitions": False,
        "model_attribute": "state",
    }


def overlay_kwargs() -> dict[str, Any]:
    return {
        "states": OVERLAY_STATES,
        "transitions": OVERLAY_TRANSITIONS,
        "auto_transitions": False,
        "model_attribute": "overlay",
    }

"""When the car may install an update (SPEC O-OTA-2): only idle, never during a trip, a
forgotten-item window or a card registration, and with no reservation starting soon.

"Soon" is from `lead` seconds before the reservation's card window opens (U-START-1: its start
less `start_early`) to its end, so that an install and a fallback both fit before the driver can
tap. The answer is a reason the car reports (None: it may install now).
"""

from __future__ import annotations

from firmware.bookings import Bookings
from firmware.config import Timing
from firmware.machine import IDLE, OVERLAY_OFF

DEFAULT_LEAD = 30 * 60  # seconds kept free before a reservation's card window opens


def install_refusal(
    trip_state: str,
    overlay: str,
    bookings: Bookings,
    now: float,
    timing: Timing,
    lead: float = DEFAULT_LEAD,
) -> str | None:
    """Why the car may not install now, or None."""
    if trip_state != IDLE:
        return f"the car is not idle ({trip_state})"
    if overlay != OVERLAY_OFF:
        return "a card is being registered"
    for r in bookings.reservations:
        if r.start - timing.start_early - lead <= now < r.end:
            return f"reservation {r.id} starts or runs within {lead / 60:g} minutes"
    return None

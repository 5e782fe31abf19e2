"""Who on the operator's staff may do what (SPEC O-ROLE-1), as data.

An action is a name: the reads (`fleet`, `car`, `events`, `alerts`, `audit`, `staff`, `admin`,
`updates`),
the changes (`acknowledge_alert`, `manage_staff`, `admin_change`) and each operator command as
`command:<name>`. An operator may do everything; a viewer only the reads; a technician, granted
one car and a time window, may see that car and put it into service mode or run its self-test
(`service_mode`, `self_test`), only on that car and only inside the window.
"""

from __future__ import annotations

import datetime as dt

from cloud.store.console import Staff
from protocol.messages import OPERATOR_COMMANDS

CONSOLE_COMMANDS = (*OPERATOR_COMMANDS, "locate")
READS = ("fleet", "car", "events", "alerts", "audit", "staff", "admin", "updates")
CHANGES = (
    "acknowledge_alert",
    "manage_staff",
    "admin_change",
    *(f"command:{name}" for name in CONSOLE_COMMANDS),
)
TECHNICIAN = ("car", "events", "command:service_mode", "command:self_test")
MAY: dict[str, tuple[str, ...]] = {
    "operator": READS + CHANGES,
    "viewer": READS,
    "technician": TECHNICIAN,
}


def refusal(staff: Staff, action: str, car_id: str | None, now: dt.datetime) -> str | None:
    """Why `staff` may not do `action` (on `car_id`) at `now`: a reason code, or None."""
    if staff.disabled:
        return "staff_disabled"
    if action not in MAY.get(staff.role, ()):
        return "not_permitted"
    if staff.role == "technician":
        if car_id != staff.car_id:
            return "not_your_car"
        assert staff.window_start is not None and staff.window_end is not None
        if not staff.window_start <= now < staff.window_end:
            return "outside_window"
    return None


def sees_fleet(staff: Staff) -> bool:
    """A technician sees their one car, never the fleet."""
    return staff.role != "technician"

"""The car installs an update only when idle with no reservation near (SPEC O-OTA-2), tried by
hypothesis over every state, overlay and booking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware.bookings import Bookings, Reservation
from firmware.config import Timing
from firmware.machine import FORGOTTEN, IDLE, IN_USE, OVERLAY_OFF, OVERLAY_STATES, STATES
from firmware.update_gate import DEFAULT_LEAD, install_refusal

T = Timing()
HOUR = 3600.0


def booked(*spans: tuple[float, float]) -> Bookings:
    return Bookings(1, tuple(Reservation(f"r{i}", "d", s, e) for i, (s, e) in enumerate(spans)))


def test_idle_with_nothing_booked_installs() -> None:
    assert install_refusal(IDLE, OVERLAY_OFF, booked(), 1000.0, T) is None


def test_never_during_a_trip_or_a_forgotten_item_window() -> None:
    assert install_refusal(IN_USE, OVERLAY_OFF, booked(), 0.0, T) == "the car is not idle (in_use)"
    assert install_refusal(FORGOTTEN, OVERLAY_OFF, booked(), 0.0, T) == (
        "the car is not idle (forgotten_item_window)"
    )


def test_a_reservation_starting_soon_holds_the_install_until_it_ends() -> None:
    start = 10 * HOUR
    bookings = booked((start, start + 2 * HOUR))
    opens = start - T.start_early - DEFAULT_LEAD
    assert install_refusal(IDLE, OVERLAY_OFF, bookings, opens - 1, T) is None
    assert "reservation r0" in str(install_refusal(IDLE, OVERLAY_OFF, bookings, opens, T))
    assert install_refusal(IDLE, OVERLAY_OFF, bookings, start + HOUR, T) is not None
    assert install_refusal(IDLE, OVERLAY_OFF, bookings, start + 2 * HOUR, T) is None


spans = st.lists(
    st.tuples(st.floats(0, 48 * HOUR), st.floats(15 * 60, 12 * HOUR)).map(
        lambda p: (p[0], p[0] + p[1])
    ),
    max_size=5,
)


@given(
    state=st.sampled_from(STATES),
    overlay=st.sampled_from(OVERLAY_STATES),
    booking=spans,
    now=st.floats(0, 60 * HOUR),
    lead=st.floats(0, 2 * HOUR),
)
def test_an_install_is_never_allowed_where_a_driver_could_need_the_car(
    state: str, overlay: str, booking: list[tuple[float, float]], now: float, lead: float
) -> None:
    allowed = install_refusal(state, overlay, booked(*booking), now, T, lead) is None
    near = any(s - T.start_early - lead <= now < e for s, e in booking)
    assert allowed == (state == IDLE and overlay == OVERLAY_OFF and not near)

"""Steps the HIL scenarios share, each a few rig actions under one name a driver would use.

Every helper takes the started rig (`tools.rig.car.Rig`) and waits on a condition (never a fixed
sleep), so a scenario reads as the guide's story:

    bob = reserve(rig, minutes=60)               # through the phone; the car holds it (S-SYNC-1)
    start_by_card(rig, bob)                      # at start−14: tap, hazard ×2, unlock
    get_in_and_drive(rig)                        # door, key out, engine on, brake off
    advance_to(rig, bob.end - dt.timedelta(minutes=10))
    park_at_station(rig)                         # engine off, key back, doors closed
    wait_phone_status(bob, "completed")          # what the phone site shows

A `Booking` carries the reservation's times as aware datetimes and the phone that made it. What
the cloud recorded is read as the operator reads it (`kagi cloud list`), what the car holds as a
technician reads it (`kagi unit state`): on any rig, SQLite or PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cloud.demo import CAR, DRIVER_EMAILS
from firmware.config import Feedback
from protocol.cards import card_hash
from tools.rig.car import Mark, Rig
from tools.rig.phone import Phone, next_mark
from tools.rig.wait import wait_for

ALICE, BOB = "XXY00001001", "XXY00001002"  # the demo fleet's drivers with a card
LEAD = dt.timedelta(minutes=30)  # how far ahead `reserve` books by default
# the parts every scenario drives (a test may need more: power_cut, network, mail)
SCENARIO = ("board", "card", "cloud", "clock")


@dataclass(frozen=True)
class Booking:
    """A reservation as the phone made it; `data` is the API's answer."""

    id: str
    driver: str
    start: dt.datetime
    end: dt.datetime
    phone: Phone
    data: dict[str, Any]

    @property
    def email(self) -> str:
        return DRIVER_EMAILS[self.driver]


def at(iso: str) -> dt.datetime:
    """A time as the API writes it (ISO 8601 with its offset)."""
    return dt.datetime.fromisoformat(iso)


def reserve(
    rig: Rig,
    driver: str = BOB,
    *,
    after: dt.datetime | None = None,
    lead: dt.timedelta = LEAD,
    minutes: int = 120,
    car: str = CAR,
) -> Booking:
    """Reserve `car` for `driver` through the phone site, from the first 15-minute mark at least
    `lead` after `after` (default: the rig's now), for `minutes`; returns once the car holds the
    reservation (S-SYNC-1)."""
    phone = rig.phone(driver)
    start = next_mark((after or rig.now) + lead)
    data = phone.reserve(car, start, start + dt.timedelta(minutes=minutes))
    booking = Booking(str(data["id"]), driver, at(data["start"]), at(data["end"]), phone, data)
    wait_held(rig, booking)
    return booking


def held(rig: Rig, booking: Booking) -> dict[str, Any] | None:
    """The reservation as the car holds it (start and end in epoch seconds), or None."""
    return next((r for r in rig.held()["reservations"] if r["id"] == booking.id), None)


def wait_held(rig: Rig, booking: Booking, end: dt.datetime | None = None) -> None:
    """Until the car holds `booking` (with `end` as its end when given: an extension)."""
    want = (end or booking.end).timestamp()
    rig.wait_bookings(
        lambda rs: any(r["id"] == booking.id and r["end"] == want for r in rs),
        f"reservation {booking.id} ending {end or booking.end:%H:%M}",
    )


def advance_to(rig: Rig, when: dt.datetime) -> None:
    """Move the rig's clock (cloud and car) to `when`; it never goes back."""
    step = (when - rig.now).total_seconds()
    if step < 0:
        raise AssertionError(f"the rig's clock is at {rig.now:%H:%M:%S}, past {when:%H:%M:%S}")
    rig.advance(seconds=step)


def deadline(rig: Rig, name: str) -> dt.datetime | None:
    """When one of the car's deadlines (door, key, return_key, reminder, overtime, forgotten …)
    falls due, as the car holds it; None when it is not set."""
    at_s = rig.status()["deadlines"].get(name)
    return None if at_s is None else dt.datetime.fromtimestamp(at_s, rig.now.tzinfo)


def wait_immobilised(rig: Rig, on: bool) -> None:
    """Until the immobiliser output is on (engine cannot start) or off."""
    rig.car_outputs.wait_level("immobiliser", on, timeout=10.0)


def wait_blinking_done(rig: Rig, mark: Mark, blinks: int) -> None:
    """Until the hazard lamps have blinked `blinks` times since `mark` and gone dark: a new
    blink sequence started while a lamp is lit would merge into that blink, as a person beside
    the car would see it, so a scenario counting the next blinks waits for this first."""
    rig.wait_since(mark, f"{blinks} hazard blinks", hazard_blinks=blinks)
    rig.car_outputs.wait_level("hazard", False, timeout=10.0)


def wait_phone_status(booking: Booking, status: str) -> dict[str, Any]:
    """Until the phone site shows the reservation in `status` (reserved, in_use, completed …)."""
    found: dict[str, Any] = wait_for(
        lambda: (r := booking.phone.reservation(booking.id))["status"] == status and r,
        f"the phone to show reservation {booking.id} {status}",
    )
    return found


def wait_mail(rig: Rig, subject_part: str, to: str) -> str:
    """Until exactly one mail whose subject has `subject_part` reached `to`; its text."""
    wait_for(
        lambda: any(subject_part in s for s in rig.mails.subjects(to)),
        f"a mail {subject_part!r} to {to}",
    )
    return rig.mails.one(subject_part, to)


def at_window(rig: Rig, booking: Booking) -> Mark:
    """The clock at the reservation's start−14 min, where a start is first possible (or left as
    it is, if later); a mark of the car's outputs from there."""
    opens = booking.start - dt.timedelta(minutes=14)
    if rig.now < opens:
        advance_to(rig, opens)
    return rig.mark()


def start_by_card(rig: Rig, booking: Booking) -> None:
    """At the reservation's start−14 min (or now, if later) the driver taps the card: hazard ×2,
    the doors unlock, `unlocked` (U-START-2, U-START-4); returns once the lamps are dark."""
    mark = at_window(rig, booking)
    state = rig.tap(booking.driver)["state"]
    assert state == "unlocked", f"the tap did not start the trip: {state}"
    rig.wait_since(mark, "the unlock", unlocks=1)
    wait_blinking_done(rig, mark, Feedback().hazard_start)


def start_remotely(rig: Rig, booking: Booking) -> dict[str, Any]:
    """The phone's start (U-START-5) from start−14 min (or now, if later): hazard ×2 and the
    unlock as for a tap; the car's answer, once the lamps are dark."""
    mark = at_window(rig, booking)
    answer = booking.phone.operate(booking.id, "start")
    assert answer["ok"], f"the car refused the start: {answer}"
    rig.wait_since(mark, "the unlock", unlocks=1)
    wait_blinking_done(rig, mark, Feedback().hazard_start)
    return answer


def get_in_and_drive(rig: Rig, km: float = 0.0) -> None:
    """Open the driver's door, take the key (貸出), close the door, release the parking brake,
    start the engine, then drive `km`."""
    rig.open_door("driver")
    rig.take_key()
    rig.wait_state("in_use")
    rig.close_door("driver")
    rig.brake(False)
    rig.engine(True)
    if km:
        rig.drive(km)


def park_at_station(rig: Rig, *, brake: bool = True) -> None:
    """Back in the station's space: engine off, the parking brake (set or, `brake=False`,
    forgotten), GPS at the station with the odometer as it is, the key back at 返却, and the
    driver out with every door closed."""
    rig.engine(False)
    if brake:
        rig.brake(True)
    odometer = rig.status()["sensors"].get("odometer_km") or 1000.0
    rig.park(odometer_km=odometer)
    rig.return_key()
    rig.open_door("driver")
    rig.close_door("driver")


# ---- what the cloud recorded, what the car holds and shows -----------------------------------


def cloud_events(rig: Rig) -> list[dict[str, Any]]:
    """Every event the cloud recorded from the car, in the car's order (`kagi cloud list
    events --car car-001`)."""
    keys = {"seq": "seq", "id": "event_id", "type": "type", "data": "data", "outcome": "outcome"}
    return [{k: e[v] for k, v in keys.items()} for e in rig.cloud.list("events", car=CAR)]


def events_of(rig: Rig, kind: str) -> list[dict[str, Any]]:
    return [e for e in cloud_events(rig) if e["type"] == kind]


def wait_event(rig: Rig, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The events of `kind` once the cloud has at least `count` of them."""
    found: list[dict[str, Any]] = wait_for(
        lambda: (got := events_of(rig, kind)) and len(got) >= count and got,
        f"the cloud to record {count} {kind} event(s)",
    )
    return found


def car_online(rig: Rig) -> bool | None:
    """Whether the cloud sees the car online (S-SYNC-4; None before its first report)."""
    (status,) = [s for s in rig.cloud.list("car-status") if s["car_id"] == CAR]
    online: bool | None = status["online"]
    return online


def hash_of(rig: Rig, idm: str) -> str:
    """How the cloud and the car name a card (the IDm itself is kept nowhere)."""
    return card_hash(bytes.fromhex(rig.fleet_key), bytes.fromhex(idm))


def car_drivers(rig: Rig) -> dict[str, dict[str, Any]]:
    """The drivers the car holds (licence expiry, card hashes), as `kagi unit state` shows."""
    return {d["id"]: d for d in rig.held()["drivers"]}


def car_cards(rig: Rig, driver: str) -> list[str]:
    return list(car_drivers(rig).get(driver, {}).get("cards", []))


def red_rises(rig: Rig) -> list[float]:
    """When the reader's red LED went on (green_blink never lights it; error does)."""
    return [t for t, on in rig.car_outputs.edges("led_red") if on]


def only(rig: Rig, mark: Mark, *prompts: str) -> None:
    """Since `mark` the car said `prompts` and did nothing else: no relay, no hazard lamp."""
    rig.wait_since(mark, f"the prompts {list(prompts)}", prompts=list(prompts))
    nothing = {"unlocks": 0, "locks": 0, "hazard_blinks": 0}
    assert rig.since(mark, settle=0.2) == {**nothing, "prompts": list(prompts)}

"""Steps the HIL scenarios share, each a few rig actions under one name a driver would use.

Every helper takes the started `SimRig` and waits on a condition (never a fixed sleep), so a
scenario reads as the guide's story:

    hand = Hand(rig)                             # the driver's hand at the reader (close() it)
    bob = reserve(rig, minutes=60)               # through the phone; the car holds it (S-SYNC-1)
    start_by_card(rig, hand, bob)                # at start−14: tap, hazard ×2, unlock
    get_in_and_drive(rig)                        # door, key out, engine on, brake off
    advance_to(rig, bob.end - dt.timedelta(minutes=10))
    park_at_station(rig)                         # engine off, key back, doors closed
    wait_phone_status(bob, "completed")          # what the phone site shows

A `Booking` carries the reservation's times as aware datetimes and the phone that made it.

`Hand` taps cards the way a driver does: the card into the reader's field until the car has read
it, then away until the reader has seen it go, so the next tap of the same card is a new tap
(`rig.tap` runs one emulator process per tap and takes the field away with the card: the reader
sees itself unplugged, never the card leaving, and ignores the same card's next tap). The card
is the same nfcpy tt3 emulation `kagi card emulate` runs, held by the test for all its taps.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from boards.common.link import LED_PATTERNS
from cloud.cli import DEMO
from firmware.config import Feedback
from firmware.tests.unit_process import read_database
from hil_tests.phone import Phone
from hil_tests.rig import CAR, CARDS, Mark, SimRig, next_mark, wait_for
from protocol.cards import card_hash
from tools.card_emulator import CardEmulator, EmulatedCard

ALICE, BOB = "XXY00001001", "XXY00001002"  # the demo fleet's drivers with a card
EMAIL = {d["driver_id"]: str(d["email"]) for d in DEMO["drivers"]}
LEAD = dt.timedelta(minutes=30)  # how far ahead `reserve` books by default


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
        return EMAIL[self.driver]


def at(iso: str) -> dt.datetime:
    """A time as the API writes it (ISO 8601 with its offset)."""
    return dt.datetime.fromisoformat(iso)


def reserve(
    rig: SimRig,
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


def held(rig: SimRig, booking: Booking) -> dict[str, Any] | None:
    """The reservation as the car holds it (start and end in epoch seconds), or None."""
    from firmware.tests.unit_process import read_database

    assert rig.unit is not None
    reservations = read_database(rig.unit.database)["bookings"]["reservations"]
    return next((r for r in reservations if r["id"] == booking.id), None)


def wait_held(rig: SimRig, booking: Booking, end: dt.datetime | None = None) -> None:
    """Until the car holds `booking` (with `end` as its end when given: an extension)."""
    want = (end or booking.end).timestamp()
    rig.wait_bookings(
        lambda rs: any(r["id"] == booking.id and r["end"] == want for r in rs),
        f"reservation {booking.id} ending {end or booking.end:%H:%M}",
    )


def advance_to(rig: SimRig, when: dt.datetime) -> None:
    """Move the rig's clock (cloud and car) to `when`; it never goes back."""
    step = (when - rig.now).total_seconds()
    if step < 0:
        raise AssertionError(f"the rig's clock is at {rig.now:%H:%M:%S}, past {when:%H:%M:%S}")
    rig.advance(seconds=step)


def deadline(rig: SimRig, name: str) -> dt.datetime | None:
    """When one of the car's deadlines (door, key, return_key, reminder, overtime, forgotten …)
    falls due, as the car holds it; None when it is not set."""
    at_s = rig.status()["deadlines"].get(name)
    return None if at_s is None else dt.datetime.fromtimestamp(at_s, rig.now.tzinfo)


def wait_immobilised(rig: SimRig, on: bool) -> None:
    """Until the board's immobiliser output is on (engine cannot start) or off."""
    assert rig.board is not None
    rig.board.wait_output("immobiliser", on, timeout=10.0)


def wait_blinking_done(rig: SimRig, mark: Mark, blinks: int) -> None:
    """Until the hazard lamps have blinked `blinks` times since `mark` and gone dark: a new
    blink sequence started while a lamp is lit would merge into that blink, as a person beside
    the car would see it, so a scenario counting the next blinks waits for this first."""
    assert rig.board is not None
    rig.wait_since(mark, f"{blinks} hazard blinks", hazard_blinks=blinks)
    rig.board.wait_output("hazard", False, timeout=10.0)


def wait_phone_status(booking: Booking, status: str) -> dict[str, Any]:
    """Until the phone site shows the reservation in `status` (reserved, in_use, completed …)."""
    found: dict[str, Any] = wait_for(
        lambda: (r := booking.phone.reservation(booking.id))["status"] == status and r,
        f"the phone to show reservation {booking.id} {status}",
    )
    return found


def wait_mail(rig: SimRig, subject_part: str, to: str) -> str:
    """Until exactly one mail whose subject has `subject_part` reached `to`; its text."""
    wait_for(
        lambda: any(subject_part in s for s in rig.mails.subjects(to)),
        f"a mail {subject_part!r} to {to}",
    )
    return rig.mails.one(subject_part, to)


class Hand:
    """A driver's hand at the car's reader: `tap(card)` as often as wanted; `close()` at the end
    (or use it as a context manager). The reader's field belongs to it meanwhile, so `rig.tap`
    cannot be used alongside it."""

    def __init__(self, rig: SimRig) -> None:
        assert rig.unit is not None
        self.rig = rig
        self._log = rig.unit.log_path
        start = self._size()
        self._field = CardEmulator(rig.reader_url)  # the empty field: the reader opens on it
        try:
            # with nothing at its udp port the unit's reader retries every second
            wait_for(lambda: ": opened" in self._since(start), "the unit's reader to open")
        except BaseException:
            self._field.stop()
            raise

    def __enter__(self) -> Hand:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._field.stop()

    def tap(self, card: str) -> dict[str, Any]:
        """Present `card` (a demo driver's ID or an IDm) until the car reads it, take it away
        until the reader sees it gone; the unit's status after the tap was handled."""
        idm = bytes.fromhex(CARDS.get(card, card))
        start = self._size()
        self._field.present(EmulatedCard.plain(idm))
        try:
            wait_for(lambda: "card tapped (" in self._since(start), f"the car to read {idm.hex()}")
        finally:
            self._field.remove()
        wait_for(lambda: "card taken away" in self._since(start), "the reader to see it go")
        return self.rig.status()  # answered after the tap was handled (the runner is in order)

    def _size(self) -> int:
        try:
            return self._log.stat().st_size
        except FileNotFoundError:
            return 0

    def _since(self, offset: int) -> str:
        """The unit's log from `offset` on (it only grows: the unit appends to it)."""
        try:
            with open(self._log, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def at_window(rig: SimRig, booking: Booking) -> Mark:
    """The clock at the reservation's start−14 min, where a start is first possible (or left as
    it is, if later); a mark of the car's outputs from there."""
    opens = booking.start - dt.timedelta(minutes=14)
    if rig.now < opens:
        advance_to(rig, opens)
    return rig.mark()


def start_by_card(rig: SimRig, hand: Hand, booking: Booking) -> None:
    """At the reservation's start−14 min (or now, if later) the driver taps the card: hazard ×2,
    the doors unlock, `unlocked` (U-START-2, U-START-4); returns once the lamps are dark."""
    mark = at_window(rig, booking)
    state = hand.tap(booking.driver)["state"]
    assert state == "unlocked", f"the tap did not start the trip: {state}"
    rig.wait_since(mark, "the unlock", unlocks=1)
    wait_blinking_done(rig, mark, Feedback().hazard_start)


def start_remotely(rig: SimRig, booking: Booking) -> dict[str, Any]:
    """The phone's start (U-START-5) from start−14 min (or now, if later): hazard ×2 and the
    unlock as for a tap; the car's answer, once the lamps are dark."""
    mark = at_window(rig, booking)
    answer = booking.phone.operate(booking.id, "start")
    assert answer["ok"], f"the car refused the start: {answer}"
    rig.wait_since(mark, "the unlock", unlocks=1)
    wait_blinking_done(rig, mark, Feedback().hazard_start)
    return answer


def get_in_and_drive(rig: SimRig, km: float = 0.0) -> None:
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


def park_at_station(rig: SimRig, *, brake: bool = True) -> None:
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


def cloud_events(rig: SimRig) -> list[dict[str, Any]]:
    """Every event the cloud recorded from the car, in the car's order (read-only)."""
    db = sqlite3.connect(f"file:{rig.db}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute(
            "SELECT seq, event_id, type, data, outcome FROM car_events WHERE car_id = ? "
            "ORDER BY seq",
            (CAR,),
        ).fetchall()
    finally:
        db.close()
    return [
        {"seq": s, "id": i, "type": t, "data": json.loads(d), "outcome": o}
        for s, i, t, d, o in rows
    ]


def events_of(rig: SimRig, kind: str) -> list[dict[str, Any]]:
    return [e for e in cloud_events(rig) if e["type"] == kind]


def wait_event(rig: SimRig, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The events of `kind` once the cloud has at least `count` of them."""
    found: list[dict[str, Any]] = wait_for(
        lambda: (got := events_of(rig, kind)) and len(got) >= count and got,
        f"the cloud to record {count} {kind} event(s)",
    )
    return found


def hash_of(rig: SimRig, idm: str) -> str:
    """How the cloud and the car name a card (the IDm itself is kept nowhere)."""
    return card_hash(bytes.fromhex(rig.fleet_key), bytes.fromhex(idm))


def car_drivers(rig: SimRig) -> dict[str, dict[str, Any]]:
    """The drivers the car holds (licence expiry, card hashes), from its own database."""
    assert rig.unit is not None
    drivers = read_database(rig.unit.database)["bookings"]["drivers"]
    return {d["id"]: d for d in drivers}


def car_cards(rig: SimRig, driver: str) -> list[str]:
    return list(car_drivers(rig).get(driver, {}).get("cards", []))


def led_patterns(rig: SimRig) -> list[str]:
    """Every reader LED pattern the board was told to show, in order (from its console)."""
    assert rig.board is not None
    found = re.findall(r"command led \((\d+),\)", rig.board.log_text())
    return [LED_PATTERNS[int(i)] for i in found]


def red_rises(rig: SimRig) -> list[float]:
    """When the reader's red LED went on (green_blink never lights it; error does)."""
    assert rig.board is not None
    return [t for t, level in rig.board.edges("led_red") if level]


def only(rig: SimRig, mark: Mark, *prompts: str) -> None:
    """Since `mark` the car said `prompts` and did nothing else: no relay, no hazard lamp."""
    rig.wait_since(mark, f"the prompts {list(prompts)}", prompts=list(prompts))
    nothing = {"unlocks": 0, "locks": 0, "hazard_blinks": 0}
    assert rig.since(mark, settle=0.2) == {**nothing, "prompts": list(prompts)}

"""Cards at the car: a new card registered from the phone and mailed, registration running out,
a revoked card, other drivers' cards and an expired licence — through every real part.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from cloud.demo import CAR, DRIVER_CARDS
from hil_tests.steps import (
    ALICE,
    BOB,
    SCENARIO,
    advance_to,
    car_cards,
    car_drivers,
    events_of,
    hash_of,
    only,
    red_rises,
    reserve,
    wait_event,
)
from tools.rig.car import Rig
from tools.rig.phone import Refusal
from tools.rig.wait import wait_for

DAN = "XXY00002002"  # the demo driver whose licence ran out in 2024
DAN_CARD = "0505050505050505"  # his card (`kagi cloud demo`)
NEW_CARD = "0909090909090909"  # an IDm no one has
EARLY = dt.timedelta(minutes=14)  # U-START-1, U-START-2: the reader blinks from start−14 min

pytestmark = pytest.mark.needs(*SCENARIO)


# ---- registration ----------------------------------------------------------------------------


def test_a_card_registered_at_the_car_is_mailed_and_then_starts_the_trip(rig: Rig) -> None:
    # SPEC U-CARD-1, U-CARD-2, N-MAIL-1, U-CARD-4, S-SYNC-1, S-SYNC-3, U-START-3
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start - EARLY)
    assert rig.outputs["led"] == "green_blink"
    mark = rig.mark()
    assert rig.tap(NEW_CARD)["state"] == "idle"  # a card no one has opens nothing
    only(rig, mark, "card_denied")

    answer = bob.phone.operate(bob.id, "register_card")
    assert (answer["ok"], answer["code"]) == (True, "registration_started")
    seen = rig.outputs
    assert (seen["overlay"], seen["led"]) == ("registering", "green_yellow_blink")
    assert seen["prompts"][-1] == "registration"  # "tap the card to register"

    mark = rig.mark()
    status = rig.tap(NEW_CARD)
    assert (status["state"], status["overlay"]) == ("idle", "off")
    only(rig, mark, "card_registered")
    assert rig.outputs["led"] == "green_blink"  # back to what it showed before

    new = hash_of(rig, NEW_CARD)

    # the cloud registered it to the reserving driver (once the car's event is in), as the
    # operator's list shows
    def registered() -> list[tuple[str, str | None]]:
        cards = rig.cloud.list("cards")
        return [(c["driver_id"], c["revoked_at"]) for c in cards if c["card_hash"] == new]

    assert wait_for(registered, "the cloud to register the card") == [(BOB, None)]

    # N-MAIL-1: 認証カードIDのご案内 to Bob, naming this card (by its ID, never the IDm), once
    def card_mails() -> list[str]:
        return [
            text
            for m in rig.mails.messages
            if "認証カードIDのご案内" in str(m["Subject"]) and bob.email in str(m["To"])
            if new[:16] in (text := str(m.get_body().get_content()))  # type: ignore[union-attr]
        ]

    (mail,) = wait_for(card_mails, "the card mail to Bob")
    assert NEW_CARD not in mail  # the card's ID, not its IDm
    # S-SYNC-3: the command got exactly one result back
    results = events_of(rig, "command_result")
    assert [e["data"]["command_id"] for e in results] == [answer["command_id"]]
    # U-CARD-4, S-SYNC-1: the car holds it as soon as the cloud has it, and it opens the car
    wait_for(lambda: new in car_cards(rig, BOB), "the car to hold the new card")
    mark = rig.mark()
    assert rig.tap(NEW_CARD)["state"] == "unlocked"
    rig.wait_since(mark, "hazard ×2 and the unlock", unlocks=1, hazard_blinks=2)
    assert rig.since(mark)["prompts"] == ["start_ok"]
    assert rig.outputs["doors"] == "unlocked"
    started = wait_event(rig, "trip_started")
    assert [(e["data"]["reservation_id"], e["data"]["by"]) for e in started] == [(bob.id, "card")]
    assert len(card_mails()) == 1


def test_registration_without_a_tap_ends_and_the_reader_shows_what_it_did_before(rig: Rig) -> None:
    # SPEC U-CARD-1, U-CARD-3, U-FB-1
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start - EARLY)
    answer = bob.phone.operate(bob.id, "register_card")
    assert answer["ok"]
    assert answer["data"]["until"] - answer["data"]["at"] == 60  # the default timeout
    assert rig.outputs["led"] == "green_yellow_blink"
    rig.advance(seconds=59)
    assert (rig.status()["overlay"], rig.outputs["led"]) == ("registering", "green_yellow_blink")
    rig.advance(seconds=1)
    assert (rig.status()["overlay"], rig.outputs["led"]) == ("off", "green_blink")
    ended = wait_event(rig, "registration_ended")
    assert [e["data"]["reason"] for e in ended] == ["timeout"]

    # a card tapped afterwards is not registered: it is an unknown card
    mark = rig.mark()
    assert rig.tap(NEW_CARD)["state"] == "idle"
    only(rig, mark, "card_denied")

    # during the trip the reader is dark; registration lies over it and gives it back
    assert rig.tap(BOB)["state"] == "unlocked"
    rig.open_door("driver")  # a door opened in time: no security lock (U-SEC-1)
    assert rig.outputs["led"] == "dark"
    assert bob.phone.operate(bob.id, "register_card")["ok"]
    assert (rig.status()["overlay"], rig.outputs["led"]) == ("registering", "green_yellow_blink")
    rig.advance(seconds=60)
    seen = rig.outputs
    assert (seen["state"], seen["overlay"], seen["led"]) == ("unlocked", "off", "dark")
    assert hash_of(rig, NEW_CARD) not in car_cards(rig, BOB)
    assert hash_of(rig, NEW_CARD) not in [c["card_hash"] for c in rig.cloud.list("cards")]
    assert events_of(rig, "card_registered") == []


# ---- cards that must not open the car --------------------------------------------------------


def test_a_revoked_card_reaches_the_car_at_once_and_never_opens_it(rig: Rig) -> None:
    # SPEC U-CARD-4, S-SYNC-1, U-START-3, U-FB-1, U-FB-3, X-SAFE-2
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start - EARLY)
    bob_card = hash_of(rig, DRIVER_CARDS[BOB])
    assert car_cards(rig, BOB) == [bob_card]

    # the operator revokes the lost card; the car drops it within a second (S-SYNC-1)
    out = rig.cloud.kagi("revoke-card", "--idm", DRIVER_CARDS[BOB])
    assert f"card {bob_card} of driver {BOB} revoked" in out
    revoked = time.monotonic()
    wait_for(lambda: car_cards(rig, BOB) == [], "the car to drop the revoked card")
    took = time.monotonic() - revoked
    assert took < 1.0, f"the revocation reached the car after {took:.2f} s"

    told, red, mark = len(rig.car_outputs.led_patterns()), len(red_rises(rig)), rig.mark()
    status = rig.tap(BOB)
    assert status["state"] == "idle" and status["trip"] is None
    only(rig, mark, "card_denied")
    # U-FB-1: the reader was told the error pattern and lit red (green_blink never lights
    # red), then went back to green_blink
    assert rig.car_outputs.led_patterns()[told:] == ["error", "green_blink"]
    assert len(red_rises(rig)) > red
    seen = rig.outputs
    assert (seen["doors"], seen["immobilised"], seen["led"]) == ("locked", True, "green_blink")
    denied = wait_event(rig, "card_denied")
    assert [(e["data"]["card"], e["data"]["reason"]) for e in denied] == [
        (bob_card, "unknown_card")
    ]
    assert events_of(rig, "trip_started") == []
    assert bob.phone.reservation(bob.id)["status"] == "reserved"


def test_the_error_pattern_after_a_denied_tap_lasts_long_enough_to_be_seen(rig: Rig) -> None:
    # SPEC U-FB-1, U-FB-3: the denial feedback is for a person at the windscreen; the unit says
    # `error` and at once what the car shows now, and the board keeps the error for its 1.5 s
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start - EARLY)
    red = len(red_rises(rig))
    rig.tap(NEW_CARD)
    first = wait_for(lambda: red_rises(rig)[red:], "the red LED")[0]
    # both told within the tap
    wait_for(
        lambda: rig.car_outputs.led_patterns()[-2:] == ["error", "green_blink"], "error, then green"
    )
    # the error blinks red every 200 ms for 1.5 s: seven more times after the first
    rises = wait_for(lambda: (r := red_rises(rig)[red:]) and len(r) >= 8 and r, "8 red blinks")
    assert 1.3 <= rises[7] - first <= 1.5
    # then the green blink the state shows, and no more red
    green = wait_for(
        lambda: [t for t, on in rig.car_outputs.edges("led_green") if on and t > rises[-1]], "green"
    )
    assert green[0] - first >= 1.45
    assert red_rises(rig)[red:] == rises[:8]


def test_other_drivers_and_an_expired_licence_are_denied_and_nothing_opens(rig: Rig) -> None:
    # SPEC U-START-3, U-LIC-1, C-LIC-1, U-FB-3, X-SAFE-2, S-SYNC-1
    bob = reserve(rig, BOB)
    advance_to(rig, bob.start - EARLY)

    # Dan cannot even book: his licence has expired (C-LIC-1)
    later = bob.start + dt.timedelta(hours=3)
    with pytest.raises(Refusal) as refused:
        rig.phone(DAN).reserve(CAR, later, later + dt.timedelta(hours=1))
    assert refused.value.code == "licence_expired"

    mark = rig.mark()
    for card in (ALICE, DAN_CARD):  # the member's admin, who has no reservation; Dan
        status = rig.tap(card)
        assert status["state"] == "idle" and status["trip"] is None

    # Bob's licence turns out to have run out yesterday: the operator records it, the car gets
    # it (S-SYNC-1) and refuses his own valid card at the tap (U-LIC-1)
    yesterday = (rig.now - dt.timedelta(days=1)).date()
    rig.cloud.kagi("edit-driver", BOB, "--licence-expiry", yesterday.isoformat())
    wait_for(
        lambda: car_drivers(rig)[BOB]["licence_expiry"] == yesterday.isoformat(),
        "the car to hold Bob's new licence expiry",
    )
    status = rig.tap(BOB)
    assert status["state"] == "idle" and status["trip"] is None

    only(rig, mark, "card_denied", "card_denied", "card_denied")
    seen = rig.outputs
    assert (seen["doors"], seen["immobilised"]) == ("locked", True)
    denied = wait_event(rig, "card_denied", 3)
    assert [e["data"]["reason"] for e in denied] == [
        "unknown_card",  # Alice: the car holds the cards of the drivers booked on it only
        "unknown_card",  # Dan: the same (the cloud never booked him)
        "licence_expired",
    ]
    assert events_of(rig, "trip_started") == []

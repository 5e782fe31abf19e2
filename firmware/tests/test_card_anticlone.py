"""Strong cards (FeliCa Lite-S) and copies of their IDm, through the trip core and end to end.

A card registered as strong opens the car only when the reader reports a successful mutual
authentication; a copy of its IDm is denied with the denial feedback, reported as
`card_clone_suspected`, and opens nothing. Plain cards keep working by IDm unless the
configuration demands strong cards.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from firmware.bookings import Bookings, Driver, Reservation
from firmware.clock import ManualClock
from firmware.config import Cards, ConfigError, TripConfig, load_unit_config
from firmware.effects import Prompt, ReaderLed, Unlock
from firmware.fakes import FakeBody, FakeCloudLink, MemoryStore
from firmware.inputs import CardTapped
from firmware.reader_nfc import NfcReader
from firmware.runner import Runner
from firmware.store import SCHEMA, SqliteStore
from firmware.tests.harness import ALICE_ID, BOB, BOB_ID, END, KEY, MIN, START, Car
from firmware.tests.test_reader_nfc import MASTER, free_udp_port, wait_until
from protocol.cards import card_hash
from tools.card_emulator import CardEmulator, EmulatedCard

LITE = bytes.fromhex("0123456789abcdef")  # Alice's FeliCa Lite-S card, registered as strong
LITE_HASH = card_hash(KEY, LITE)
BOB_HASH = card_hash(KEY, BOB)


def strong_bookings(version: int = 1) -> Bookings:
    return Bookings(
        version,
        (
            Reservation("r1", ALICE_ID, START, END),
            Reservation("r2", BOB_ID, START + 5 * 3600, START + 6 * 3600),
        ),
        {
            ALICE_ID: Driver(
                ALICE_ID, "2030-12-31", frozenset({LITE_HASH}), frozenset({LITE_HASH})
            ),
            BOB_ID: Driver(BOB_ID, "2030-12-31", frozenset({BOB_HASH})),
        },
    )


def strong_only() -> TripConfig:
    return dataclasses.replace(TripConfig(), cards=Cards(strong_required=True))


def tap(car: Car, idm: bytes, authenticated: bool = False) -> None:
    car.send(CardTapped(idm, authenticated=authenticated))


# ---- the trip core -----------------------------------------------------------------------------


def test_a_strong_card_that_authenticates_starts_the_trip():
    # SPEC U-START-4 with a strong card
    car = Car(books=strong_bookings())
    car.at(START)
    tap(car, LITE, authenticated=True)
    assert car.state == "unlocked"
    assert car.doors == "unlocked"


def test_a_copy_of_a_strong_cards_idm_is_denied_reported_and_opens_nothing():
    # SPEC U-START-3, U-FB-3, X-SAFE-2: denial feedback, nothing else changes, the operator knows
    car = Car(books=strong_bookings())
    car.at(START)
    tap(car, LITE, authenticated=False)
    assert car.state == "idle"
    assert car.doors == "locked"
    assert Unlock() not in car.effects
    assert "card_denied" in car.prompts
    assert ReaderLed("error") in car.effects
    clone = car.reports("card_clone_suspected")
    assert len(clone) == 1
    assert clone[0]["card"] == LITE_HASH and clone[0]["driver_id"] == ALICE_ID
    assert LITE.hex() not in str(clone[0])  # the IDm never leaves the car in the clear
    tap(car, LITE, authenticated=True)  # the real card still works
    assert car.state == "unlocked"


def test_a_copy_is_denied_during_the_trip_too_and_the_trip_goes_on():
    # SPEC U-SEC-4: a copy cannot re-unlock a car that its owner locked
    car = Car(books=strong_bookings())
    car.at(START)
    tap(car, LITE, authenticated=True)
    car.open_door()
    car.take_key()
    car.close_door()
    car.command("reunlock")
    car.advance(5 * MIN)
    before = car.state
    tap(car, LITE, authenticated=False)
    assert car.state == before
    assert Unlock() not in car.effects
    assert [e for e in car.effects if isinstance(e, Prompt)] == [Prompt("card_denied")]
    assert len(car.reports("card_clone_suspected")) == 1


def test_plain_cards_keep_working_by_idm():
    # guide §6: phones, licences and transit cards are registered by IDm
    car = Car(books=strong_bookings())
    car.at(START + 5 * 3600)
    tap(car, BOB)
    assert car.state == "unlocked"
    assert car.reports("card_clone_suspected") == []


def test_when_strong_cards_are_required_a_plain_card_is_refused():
    # configuration: cards.strong_required
    car = Car(config=strong_only(), books=strong_bookings())
    car.at(START + 5 * 3600)
    tap(car, BOB)
    assert car.state == "idle"
    assert "card_denied" in car.prompts
    assert car.reports("card_denied")[-1]["reason"] == "strong_card_required"
    car2 = Car(config=strong_only(), books=strong_bookings())
    car2.at(START)
    tap(car2, LITE, authenticated=True)
    assert car2.state == "unlocked"


def test_a_card_registered_after_its_authentication_is_reported_as_strong():
    # SPEC U-CARD-1, U-CARD-2: the cloud learns the card's hash and whether it is strong
    car = Car(books=strong_bookings())
    car.at(START - 10 * MIN)
    assert car.command("register_card", reservation_id="r1").ok
    new = bytes.fromhex("0a0b0c0d0e0f1011")
    tap(car, new, authenticated=True)
    assert car.reports("card_registered")[-1]["strong"] is True
    assert car.reports("card_registered")[-1]["card"] == card_hash(KEY, new)
    assert car.command("register_card", reservation_id="r1").ok
    tap(car, BOB)
    assert car.reports("card_registered")[-1]["strong"] is False


def test_registration_refuses_a_plain_card_when_strong_cards_are_required():
    car = Car(config=strong_only(), books=strong_bookings())
    car.at(START - 10 * MIN)
    assert car.command("register_card", reservation_id="r1").ok
    tap(car, BOB)
    assert car.reports("card_registered") == []
    assert car.reports("card_denied")[-1]["reason"] == "strong_card_required"
    assert car.overlay == "registering"


# ---- bookings, store, configuration -------------------------------------------------------------


def test_bookings_carry_the_strong_cards_and_old_snapshots_read_as_before():
    books = strong_bookings()
    data = books.to_dict()
    assert Bookings.from_dict(data) == books
    alice = next(d for d in data["drivers"] if d["id"] == ALICE_ID)
    bob = next(d for d in data["drivers"] if d["id"] == BOB_ID)
    assert alice["strong_cards"] == [LITE_HASH]
    assert "strong_cards" not in bob  # a snapshot without strong cards is unchanged
    old = {
        "version": 3,
        "reservations": [],
        "drivers": [{"id": BOB_ID, "licence_expiry": "2030-12-31", "cards": [BOB_HASH]}],
    }
    assert Bookings.from_dict(old).to_dict() == old
    assert not Bookings.from_dict(old).is_strong(BOB_HASH)


def test_a_strong_card_must_be_one_of_the_drivers_cards():
    # SPEC X-SEC-3: a malformed snapshot is refused naming the fault
    bad = {
        "drivers": [
            {"id": BOB_ID, "licence_expiry": "2030-12-31", "cards": [], "strong_cards": ["x"]}
        ]
    }
    with pytest.raises(ValueError, match=f"driver {BOB_ID}: a strong card"):
        Bookings.from_dict(bad)


def test_the_store_keeps_which_cards_are_strong(tmp_path: Path):
    # SPEC U-DATA-1: after a power cut the car still knows its strong cards
    store = SqliteStore(tmp_path / "unit.db")
    store.commit({"version": 1}, [], strong_bookings())
    store.close()
    _, books = SqliteStore(tmp_path / "unit.db").load()
    assert books.is_strong(LITE_HASH)
    assert not books.is_strong(BOB_HASH)
    assert books == strong_bookings()


def test_a_database_from_before_strong_cards_opens_with_every_card_plain(tmp_path: Path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        SCHEMA.replace("    strong INTEGER NOT NULL DEFAULT 0,\n", "")
        + "INSERT INTO meta VALUES ('schema_version', '1');"
        + "INSERT INTO meta VALUES ('next_seq', '1');"
        + "INSERT INTO meta VALUES ('bookings_version', '4');"
        + f"INSERT INTO drivers VALUES ('{BOB_ID}', '2030-12-31');"
        + f"INSERT INTO cards VALUES ('{BOB_HASH}', '{BOB_ID}');"
    )
    db.commit()
    db.close()
    _, books = SqliteStore(path).load()
    assert books.version == 4
    assert books.drivers[BOB_ID].cards == {BOB_HASH}
    assert not books.is_strong(BOB_HASH)


def _unit_toml(tmp_path: Path, unit: str = "", rest: str = "") -> Path:
    path = tmp_path / "unit.toml"
    path.write_text(
        f'[unit]\ncar_id = "c1"\ncard_key = "{KEY.hex()}"\n{unit}\n{rest}', encoding="utf-8"
    )
    return path


def test_the_card_master_key_and_strong_only_mode_are_checked_when_loading(tmp_path: Path):
    # SPEC X-SEC-3: a bad value is refused naming the key
    for value, reason in (('"zz"', "hex"), ('"0011"', "at least 16 bytes")):
        path = _unit_toml(tmp_path, f"card_master_key = {value}")
        with pytest.raises(ConfigError, match=f"unit.card_master_key: .*{reason}"):
            load_unit_config(path)
    path = _unit_toml(tmp_path, rest="[cards]\nstrong_required = true\n")
    with pytest.raises(ConfigError, match=r"cards\.strong_required: .*unit\.card_master_key"):
        load_unit_config(path)
    path = _unit_toml(tmp_path, rest="[cards]\nstrong_required = 1\n")
    with pytest.raises(ConfigError, match=r"cards\.strong_required: expected bool"):
        load_unit_config(path)
    path = _unit_toml(
        tmp_path, f'card_master_key = "{MASTER.hex()}"', "[cards]\nstrong_required = true\n"
    )
    config = load_unit_config(path)
    assert config.card_master_key_bytes == MASTER
    assert config.trip.cards.strong_required


# ---- end to end: the real adapter, the emulated card, the runner --------------------------------


def test_end_to_end_a_cloned_idm_is_denied_and_the_real_card_opens_the_car():
    # SPEC U-START-3, U-START-4, U-FB-3, X-SAFE-2 through reader, runner, core and store
    url = f"udp:127.0.0.1:{free_udp_port()}"
    emulator = CardEmulator(url)
    store = MemoryStore()
    store.bookings = strong_bookings()
    body = FakeBody()
    reader = NfcReader(url, MASTER, reopen_interval=0.05)
    runner = Runner(TripConfig(), KEY, store, body, reader, FakeCloudLink(), ManualClock(START))
    runner.start()
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        emulator.present(EmulatedCard.plain(LITE))  # someone copied the IDm onto a phone
        wait_until(lambda: any(e.type == "card_clone_suspected" for e in store.outbox))
        emulator.remove()
        wait_until(lambda: reader.card_present is None)
        assert body.car.doors == "locked"
        assert Unlock() not in body.applied
        assert body.car.prompts == ["card_denied"]
        assert ReaderLed("error") in body.applied
        emulator.present(EmulatedCard.lite_s(LITE, bytes(16)))  # a Lite-S copy, wrong key
        wait_until(lambda: sum(e.type == "card_clone_suspected" for e in store.outbox) == 2)
        emulator.remove()
        wait_until(lambda: reader.card_present is None)
        assert body.car.doors == "locked"
        emulator.present(EmulatedCard.strong(LITE, MASTER))  # Alice's own card
        wait_until(lambda: body.car.doors == "unlocked")
        assert [e.type for e in store.outbox if e.type == "trip_started"] == ["trip_started"]
    finally:
        runner.stop()
        thread.join(timeout=5)
        runner.close()
        emulator.stop()

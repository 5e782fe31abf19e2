"""The store on SQLite and on a real PostgreSQL server: the same tests, both backends.

What an operator would check: what was written reads back the same; the car buffer and a
driver's overlap are refused to the minute with a typed reason; bad input is refused naming the
field and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from cloud.store import (
    CAR_BUFFER,
    DRIVER_OVERLAP,
    DUPLICATE,
    MEMBER_LIMIT,
    REVOKED,
    STALE,
    STATUS,
    Conflict,
    InvalidValue,
    NotFound,
    Store,
)
from protocol.cards import card_hash

JST = zoneinfo.ZoneInfo("Asia/Tokyo")
T = dt.datetime(2026, 11, 24, 10, 0, tzinfo=JST)  # the first reservation: 10:00–12:00 JST
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
BUFFER = 30  # C-CAR-1's default, passed in as the policy would
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ALICE, BOB, CAROL = "XXY00001001", "XXY00001002", "XXY00002001"


@pytest.fixture
def fleet(db: Store) -> Store:
    db.add_station("tokai-1", name="Tokai 1", lat=36.4466, lon=140.6065, radius_m=50)
    for car in ("car-001", "car-002", "car-003"):
        db.add_car(car, station_id="tokai-1")
    db.add_member("XXY00001", name="Member One", email="one@example.jp")
    db.add_member("XXY00002", name="Member Two")
    expiry = dt.date(2030, 12, 31)
    db.add_driver(ALICE, name="Alice", email="a@example.jp", licence_expiry=expiry, is_admin=True)
    db.add_driver(BOB, name="Bob", email="b@example.jp", licence_expiry=expiry)
    db.add_driver(CAROL, name="Carol", email="c@example.jp", licence_expiry=expiry)
    return db


def book(db: Store, start: dt.datetime, end: dt.datetime, car="car-001", driver=ALICE, **kw):
    return db.create_reservation(
        car_id=car, driver_id=driver, start=start, end=end, buffer_minutes=BUFFER, **kw
    )


def counts(db: Store) -> tuple[int, ...]:
    """How many of each thing there is: to show that a refused write changed nothing."""
    return (
        len(db.list_members()),
        len(db.list_drivers()),
        len(db.list_cards()),
        len(db.list_stations()),
        len(db.list_cars()),
        len(db.list_reservations()),
    )


# ---- members, drivers, cards, stations, cars ---------------------------------------------------


def test_fleet_reads_back_as_written(fleet: Store, clock):
    member = fleet.get_member("XXY00001")
    assert (member.name, member.email, member.status) == ("Member One", "one@example.jp", "active")
    assert member.created_at == clock.now
    alice = fleet.get_driver(ALICE)
    assert alice.member_id == "XXY00001" and alice.is_admin
    assert alice.licence_expiry == dt.date(2030, 12, 31)
    assert [d.driver_id for d in fleet.list_drivers("XXY00001")] == [ALICE, BOB]
    station = fleet.get_station("tokai-1")
    assert (station.lat, station.lon, station.radius_m) == (36.4466, 140.6065, 50.0)
    assert [c.car_id for c in fleet.list_cars("tokai-1")] == ["car-001", "car-002", "car-003"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda db: db.add_member("XXY0001", name="short"), "member_id"),
        (lambda db: db.add_member("xxy00009", name="lower case"), "member_id"),
        (lambda db: db.add_member("XXY00009", name="  "), "name"),
        (lambda db: db.add_member("XXY00009", name="x", email="not-mail"), "email"),
        # SPEC C-DRV-1: a driver ID is 11 characters; a member ID is not one
        (
            lambda db: db.add_driver(
                "XXY00001", name="x", email="x@example.jp", licence_expiry=None
            ),
            "driver_id",
        ),
        (
            lambda db: db.add_driver(
                "XXY00001003", name="x", email="x@example.jp", licence_expiry="2030-01-01"
            ),
            "licence_expiry",
        ),
        (lambda db: db.add_station("bad/id", name="x", lat=0, lon=0, radius_m=5), "station_id"),
        (lambda db: db.add_station("s2", name="x", lat=91, lon=0, radius_m=5), "lat"),
        (lambda db: db.add_station("s2", name="x", lat=0, lon=0, radius_m=0), "radius_m"),
        (lambda db: db.add_car("car #4", station_id="tokai-1"), "car_id"),
        (lambda db: db.add_card(ALICE, "ABC123"), "card_hash"),
    ],
)
def test_malformed_values_are_refused_naming_the_field(fleet: Store, call, field):
    before = counts(fleet)
    with pytest.raises(InvalidValue) as err:
        call(fleet)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert counts(fleet) == before


def test_unknown_references_are_refused(fleet: Store):
    before = counts(fleet)
    with pytest.raises(NotFound, match=r"member 'XXY00009'.*first 8 characters"):
        fleet.add_driver("XXY00009001", name="x", email="x@example.jp", licence_expiry=None)
    with pytest.raises(NotFound, match="station 'nowhere'"):
        fleet.add_car("car-009", station_id="nowhere")
    with pytest.raises(NotFound, match="driver 'XXY00001009'"):
        fleet.add_card("XXY00001009", card_hash(KEY, bytes(8)))
    with pytest.raises(NotFound) as err:
        book(fleet, T, T + H, car="car-404")
    assert (err.value.kind, err.value.key) == ("car", "car-404")
    assert counts(fleet) == before


def test_duplicates_are_refused(fleet: Store):
    before = counts(fleet)
    for call in (
        lambda: fleet.add_member("XXY00001", name="again"),
        lambda: fleet.add_driver(ALICE, name="again", email="a@example.jp", licence_expiry=None),
        lambda: fleet.add_station("tokai-1", name="again", lat=0, lon=0, radius_m=5),
        lambda: fleet.add_car("car-001", station_id="tokai-1"),
    ):
        with pytest.raises(Conflict) as err:
            call()
        assert err.value.reason == DUPLICATE
        assert "already exists" in str(err.value)
    assert counts(fleet) == before


def test_driver_without_licence_and_updates(fleet: Store):
    d = fleet.add_driver("XXY00002002", name="Dan", email="d@example.jp", licence_expiry=None)
    assert d.licence_expiry is None and fleet.get_driver("XXY00002002").licence_expiry is None
    # a renewed licence (C-LIC-1 reads it)
    renewed = fleet.update_driver(ALICE, licence_expiry=dt.date(2035, 1, 31), is_admin=False)
    assert renewed.licence_expiry == dt.date(2035, 1, 31) and not renewed.is_admin
    assert fleet.get_driver(ALICE) == renewed


def test_member_status_and_password_hashes(fleet: Store):
    assert fleet.set_member_status("XXY00002", "revoked").status == "revoked"
    with pytest.raises(InvalidValue, match="status"):
        fleet.set_member_status("XXY00002", "banned")
    assert fleet.password_hash(ALICE) is None
    fleet.set_password_hash(ALICE, "scrypt$abc$def")
    fleet.set_password_hash("XXY00001", "scrypt$m$m")
    assert fleet.password_hash(ALICE) == "scrypt$abc$def"
    assert fleet.password_hash("XXY00001") == "scrypt$m$m"
    with pytest.raises(NotFound):
        fleet.set_password_hash("XXY00001009", "x")
    with pytest.raises(InvalidValue, match="account_id"):
        fleet.password_hash("nobody")


def test_cards_register_revoke_and_never_come_back(fleet: Store, clock):
    # SPEC U-CARD-4: a revoked card never opens a car again, so it is never registered again
    h = card_hash(KEY, bytes.fromhex("0101010101010101"))
    card = fleet.add_card(ALICE, h, strong=True)
    assert card.active and card.strong and fleet.get_card(h) == card
    with pytest.raises(Conflict) as err:
        fleet.add_card(BOB, h)
    assert err.value.reason == DUPLICATE and ALICE in str(err.value)
    clock.advance(hours=1)
    revoked = fleet.revoke_card(h)
    assert revoked.revoked_at == clock.now and not revoked.active
    clock.advance(hours=1)
    assert fleet.revoke_card(h).revoked_at == revoked.revoked_at  # again: nothing changes
    assert fleet.list_cards(driver_id=ALICE, active_only=True) == []
    with pytest.raises(Conflict) as err:
        fleet.add_card(ALICE, h)
    assert err.value.reason == REVOKED
    other = fleet.add_card(ALICE, card_hash(KEY, bytes.fromhex("0202020202020202")))
    assert fleet.list_cards(member_id="XXY00001", active_only=True) == [other]
    with pytest.raises(NotFound):
        fleet.revoke_card(card_hash(KEY, bytes(8)))


# ---- reservations: C-CAR-1 and C-DRV-1 ---------------------------------------------------------


def test_reservation_reads_back(fleet: Store, clock):
    r = book(fleet, T, T + 2 * H)
    assert fleet.get_reservation(r.reservation_id) == r
    assert (r.car_id, r.driver_id, r.member_id, r.status) == (
        "car-001",
        ALICE,
        "XXY00001",
        "reserved",
    )
    assert r.start == T and r.end == T + 2 * H and r.start.tzinfo == dt.UTC
    assert (r.change_count, r.extension_count, r.version, r.created_at) == (0, 0, 1, clock.now)


def test_car_buffer_to_the_minute(fleet: Store):
    # SPEC C-CAR-1: nothing on the car from 30 minutes before a reservation's start to 30 after
    # its end; exactly 30 minutes apart is fine
    book(fleet, T, T + 2 * H)
    after = T + 2 * H + BUFFER * M
    before = T - BUFFER * M
    for start, end in (
        (after - M, after + H),  # 29 minutes after the end
        (before - H, before + M),  # ends 29 minutes before the start
        (T + H, T + 90 * M),  # inside
        (T - 3 * H, T + 5 * H),  # around
    ):
        with pytest.raises(Conflict) as err:
            book(fleet, start, end, driver=CAROL)
        assert err.value.reason == CAR_BUFFER
        assert "car-001" in str(err.value) and "30 minutes" in str(err.value)
    assert len(fleet.list_reservations(car_id="car-001")) == 1
    book(fleet, after, after + H, driver=CAROL)
    book(fleet, before - H, before, driver=BOB)
    # another car is another story
    book(fleet, T, T + 2 * H, car="car-002", driver=CAROL)


def test_cancelled_and_completed_reservations_free_the_car(fleet: Store):
    r = book(fleet, T, T + 2 * H)
    fleet.cancel_reservation(r.reservation_id, fee=0)
    book(fleet, T, T + 2 * H, driver=CAROL)


def test_driver_overlap_on_any_car(fleet: Store):
    # SPEC C-DRV-1: a driver cannot hold two reservations that overlap in time, on any cars
    book(fleet, T, T + 2 * H)
    with pytest.raises(Conflict) as err:
        book(fleet, T + H, T + 3 * H, car="car-002")
    assert err.value.reason == DRIVER_OVERLAP and ALICE in str(err.value)
    # back to back on another car is not an overlap; another driver of the member may book
    book(fleet, T + 2 * H, T + 3 * H, car="car-002")
    book(fleet, T, T + 2 * H, car="car-003", driver=BOB)


def test_times_must_be_aware_and_ordered(fleet: Store):
    naive = dt.datetime(2026, 11, 24, 10, 0)
    with pytest.raises(InvalidValue, match="start: a time must carry its time zone"):
        book(fleet, naive, T + H)
    with pytest.raises(InvalidValue, match="end: must be after the start"):
        book(fleet, T, T)
    with pytest.raises(InvalidValue, match="buffer_minutes"):
        fleet.create_reservation(
            car_id="car-001", driver_id=ALICE, start=T, end=T + H, buffer_minutes=-5
        )
    assert fleet.list_reservations() == []


def test_member_open_limit(fleet: Store, clock):
    # SPEC C-MAX-1: the member's ceiling is checked in the same transaction as the insert
    book(fleet, T, T + H, member_open_limit=2)
    book(fleet, T, T + H, car="car-002", driver=BOB, member_open_limit=2)
    with pytest.raises(Conflict) as err:
        book(fleet, T + 3 * H, T + 4 * H, member_open_limit=2)
    assert err.value.reason == MEMBER_LIMIT and "XXY00001" in str(err.value)
    assert fleet.count_open_reservations("XXY00001") == 2
    # once those are over they no longer count
    clock.now = T + 2 * H
    assert fleet.count_open_reservations("XXY00001") == 0
    book(fleet, T + 3 * H, T + 4 * H, member_open_limit=1)
    # another member is not limited by this one
    assert fleet.count_open_reservations("XXY00002") == 0


# ---- change, extend, cancel, and the history ----------------------------------------------------


def test_change_moves_the_times_and_is_recorded(fleet: Store, clock):
    r = book(fleet, T, T + 2 * H)
    clock.advance(minutes=5)
    # overlapping its own old times is fine: a reservation does not conflict with itself
    changed = fleet.change_reservation(
        r.reservation_id, start=T + H, end=T + 3 * H, buffer_minutes=BUFFER, expected_version=1
    )
    assert (changed.start, changed.end) == (T + H, T + 3 * H)
    assert (changed.change_count, changed.version, changed.updated_at) == (1, 2, clock.now)
    history = fleet.reservation_history(r.reservation_id)
    assert [h.kind for h in history] == ["created", "changed"]
    assert (history[1].old_start, history[1].old_end) == (T, T + 2 * H)
    assert (history[1].new_start, history[1].new_end) == (T + H, T + 3 * H)
    assert history[1].at == clock.now


def test_change_into_a_buffer_is_refused_and_changes_nothing(fleet: Store):
    r = book(fleet, T, T + 2 * H)
    book(fleet, T + 4 * H, T + 5 * H, driver=CAROL)
    with pytest.raises(Conflict) as err:
        fleet.change_reservation(
            r.reservation_id, start=T, end=T + 3 * H + 31 * M, buffer_minutes=BUFFER
        )
    assert err.value.reason == CAR_BUFFER
    assert fleet.get_reservation(r.reservation_id) == r
    assert len(fleet.reservation_history(r.reservation_id)) == 1
    # exactly 30 minutes before the next one is fine
    fleet.change_reservation(
        r.reservation_id, start=T, end=T + 3 * H + 30 * M, buffer_minutes=BUFFER
    )


def test_stale_version_is_refused(fleet: Store):
    r = book(fleet, T, T + 2 * H)
    fleet.change_reservation(r.reservation_id, start=T, end=T + H, buffer_minutes=BUFFER)
    with pytest.raises(Conflict) as err:
        fleet.cancel_reservation(r.reservation_id, fee=0, expected_version=r.version)
    assert err.value.reason == STALE
    assert fleet.get_reservation(r.reservation_id).status == "reserved"


def test_extend_during_the_trip_up_to_the_next_buffer(fleet: Store):
    # SPEC C-EXT-1: an extension holds only if C-CAR-1 still holds against the next reservation
    r = book(fleet, T, T + 2 * H)
    nxt = book(fleet, T + 3 * H, T + 4 * H, driver=CAROL)
    fleet.start_trip(r.reservation_id, started_at=T - 10 * M)
    with pytest.raises(Conflict) as err:
        fleet.extend_reservation(r.reservation_id, end=T + 2 * H + 45 * M, buffer_minutes=BUFFER)
    assert err.value.reason == CAR_BUFFER and err.value.other == nxt.reservation_id
    extended = fleet.extend_reservation(
        r.reservation_id, end=T + 2 * H + 30 * M, buffer_minutes=BUFFER
    )
    assert (extended.end, extended.extension_count, extended.status) == (
        T + 2 * H + 30 * M,
        1,
        "in_use",
    )
    with pytest.raises(InvalidValue, match="end: an extension must end after"):
        fleet.extend_reservation(r.reservation_id, end=T + 2 * H, buffer_minutes=BUFFER)
    kinds = [h.kind for h in fleet.reservation_history(r.reservation_id)]
    assert kinds == ["created", "started", "extended"]


def test_cancel_records_the_fee_and_status_rules(fleet: Store):
    r = book(fleet, T, T + 2 * H)
    cancelled = fleet.cancel_reservation(r.reservation_id, fee=300)
    assert (cancelled.status, cancelled.cancellation_fee) == ("cancelled", 300)
    for call, verb in (
        (lambda: fleet.cancel_reservation(r.reservation_id, fee=0), "cancelled"),
        (
            lambda: fleet.change_reservation(
                r.reservation_id, start=T, end=T + H, buffer_minutes=BUFFER
            ),
            "changed",
        ),
        (
            lambda: fleet.extend_reservation(
                r.reservation_id, end=T + 3 * H, buffer_minutes=BUFFER
            ),
            "extended",
        ),
        (lambda: fleet.start_trip(r.reservation_id, started_at=T), "started"),
    ):
        with pytest.raises(Conflict) as err:
            call()
        assert err.value.reason == STATUS
        assert f"is cancelled; it cannot be {verb}" in str(err.value)
    with pytest.raises(InvalidValue, match="fee"):
        fleet.cancel_reservation(book(fleet, T, T + H).reservation_id, fee=-1)
    with pytest.raises(NotFound, match="reservation 'nope'"):
        fleet.cancel_reservation("nope", fee=0)


def test_list_reservations_filters(fleet: Store):
    a = book(fleet, T, T + H)
    b = book(fleet, T + 5 * H, T + 6 * H, car="car-002", driver=BOB)
    c = book(fleet, T, T + H, car="car-003", driver=CAROL)
    fleet.cancel_reservation(c.reservation_id, fee=0)
    ids = lambda rs: [r.reservation_id for r in rs]  # noqa: E731
    assert ids(fleet.list_reservations(member_id="XXY00001")) == [
        a.reservation_id,
        b.reservation_id,
    ]
    assert ids(fleet.list_reservations(statuses=["cancelled"])) == [c.reservation_id]
    assert ids(fleet.list_reservations(statuses=["reserved"], ends_after=T + 2 * H)) == [
        b.reservation_id
    ]
    early = fleet.list_reservations(starts_before=T + H)
    assert set(ids(early)) == {a.reservation_id, c.reservation_id}
    assert fleet.list_reservations(statuses=[]) == []
    with pytest.raises(InvalidValue, match="statuses"):
        fleet.list_reservations(statuses=["booked"])


# ---- trips, refuels, invoices -------------------------------------------------------------------


def test_trip_start_and_end(fleet: Store):
    r = book(fleet, T, T + 2 * H)
    trip = fleet.start_trip(
        r.reservation_id, started_at=T - 5 * M, odometer_km=1234.5, fuel_pct=80, lat=36.4, lon=140.6
    )
    assert (trip.started_by, trip.odometer_start_km, trip.ended_at) == ("card", 1234.5, None)
    assert fleet.get_reservation(r.reservation_id).started_at == T - 5 * M
    with pytest.raises(Conflict, match="is in_use; it cannot be started"):
        fleet.start_trip(r.reservation_id, started_at=T)
    fleet.add_refuel(r.reservation_id, at=T + H, litres=25.0)
    fleet.add_refuel(r.reservation_id, at=T + H, litres=5.0, fuel_card=False)
    done = fleet.end_trip(
        r.reservation_id,
        ended_at=T + 2 * H + 20 * M,
        odometer_km=1300.0,
        fuel_pct=70,
        overtime_minutes=30,
        unauthorised_extension=True,
    )
    assert done.distance_km == pytest.approx(65.5)
    assert (done.overtime_minutes, done.unauthorised_extension) == (30, True)
    after = fleet.get_reservation(r.reservation_id)
    assert (after.status, after.returned_at) == ("completed", T + 2 * H + 20 * M)
    assert [(x.litres, x.fuel_card) for x in fleet.list_refuels(r.reservation_id)] == [
        (25.0, True),
        (5.0, False),
    ]
    # SPEC C-PEN-1: the late return is on the member's record as the end that was overrun
    assert fleet.unauthorised_extensions("XXY00001") == (T + 2 * H,)
    assert fleet.unauthorised_extensions("XXY00001", since=T + 3 * H) == ()
    assert [t.reservation_id for t in fleet.list_trips(member_id="XXY00001")] == [r.reservation_id]
    with pytest.raises(InvalidValue, match="ended_at: the trip started at"):
        r2 = book(fleet, T + 5 * H, T + 6 * H)
        fleet.start_trip(r2.reservation_id, started_at=T + 5 * H, started_by="remote")
        fleet.end_trip(r2.reservation_id, ended_at=T + 4 * H)
    with pytest.raises(InvalidValue, match="fuel_pct"):
        fleet.end_trip(r2.reservation_id, ended_at=T + 6 * H, fuel_pct=120)


def test_invoices(fleet: Store, clock):
    r = book(fleet, T, T + 2 * H)
    lines = [
        {"code": "time", "label_ja": "時間料金", "label_en": "Time", "yen": 1200},
        {"code": "fuel_discount", "label_ja": "給油割引", "label_en": "Fuel", "yen": -200},
    ]
    inv = fleet.add_invoice("XXY00001", lines, reservation_id=r.reservation_id)
    assert inv.total == 1000 and inv.issued_at == clock.now
    assert fleet.get_invoice(inv.invoice_id) == inv
    assert fleet.list_invoices("XXY00001") == [inv]
    with pytest.raises(InvalidValue, match=r"lines\[0\].yen"):
        fleet.add_invoice("XXY00001", [{"code": "time", "yen": 12.5}])
    with pytest.raises(InvalidValue, match="total: the lines add up to 1000"):
        fleet.add_invoice("XXY00001", lines, total=1200)
    with pytest.raises(InvalidValue, match="belongs to member XXY00001"):
        fleet.add_invoice("XXY00002", lines, reservation_id=r.reservation_id)
    assert fleet.list_invoices("XXY00001") == [inv]


def test_batch_is_all_or_nothing(fleet: Store):
    before = counts(fleet)
    with pytest.raises(Conflict), fleet.batch() as b:
        b.add_member("XXY00003", name="Three")
        b.add_driver("XXY00003001", name="T", email="t@example.jp", licence_expiry=None)
        b.add_member("XXY00001", name="already there")
    assert counts(fleet) == before
    with fleet.batch() as b:
        b.add_member("XXY00003", name="Three")
        b.set_setting("fleet_key", "00")
    assert fleet.get_member("XXY00003").name == "Three"
    assert fleet.get_setting("fleet_key") == "00" and fleet.get_setting("nothing") is None

"""The car <-> cloud contract: topics, signed envelopes and message validation.

Ed25519 is deterministic, so a message signed with a fixed key has one exact byte form: the
frames below are what both ends must produce and accept.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import messages as m
from protocol import signing, topics

KEY = signing.private_key_from_hex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)
PUBLIC = signing.public_key_from_hex(signing.public_key_hex(KEY))
OTHER = signing.new_private_key()
CARD = "a" * 64
BOOKINGS = {
    "version": 7,
    "reservations": [
        {"id": "r1", "driver_id": "XXY00001001", "start": 1795000000.0, "end": 1795003600.0}
    ],
    "drivers": [{"id": "XXY00001001", "licence_expiry": "2030-12-31", "cards": [CARD]}],
}


def test_topics_are_per_car_and_parse_back():
    assert topics.topic("car-001", "reservations") == "kagi/v1/cars/car-001/reservations"
    assert topics.parse("kagi/v1/cars/car-001/events") == ("car-001", "events")
    assert topics.car_filter("car-001") == "kagi/v1/cars/car-001/#"
    assert topics.fleet_filter("events", shared=True) == "$share/kagi-cloud/kagi/v1/cars/+/events"
    for bad in ("car/1", "car+", "#", "", "x" * 65):
        with pytest.raises(ValueError, match="car_id"):
            topics.topic(bad, "events")
    for bad in ("kagi/v1/cars/car-001", "kagi/v1/cars/car-001/events/x", "other/car-001/events"):
        with pytest.raises(ValueError, match="not a kagi car topic"):
            topics.parse(bad)


def test_the_public_key_of_the_rfc8032_test_key():
    # RFC 8032 §7.1 test 1: the secret key above has this public key.
    assert (
        signing.public_key_hex(KEY)
        == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )


def test_a_signed_command_is_byte_exact():
    cmd = m.Command(
        "c1", "car-001", "reunlock", 1795000000.0, 1795000060.0, {"reservation_id": "r1"}
    )
    frame = m.encode(signing.sign(KEY, m.Command.KIND, cmd.to_body()))
    # What is signed: the canonical JSON of kind and body (sorted keys, no spaces).
    assert signing.canonical({"kind": "command", "body": cmd.to_body()}) == (
        b'{"body":{"args":{"reservation_id":"r1"},"car_id":"car-001","expires_at":1795000060.0,'
        b'"id":"c1","issued_at":1795000000.0,"name":"reunlock","v":1},"kind":"command"}'
    )
    # The frame on the wire, signature included (Ed25519 is deterministic).
    assert frame == (
        b'{"kind":"command","body":{"v":1,"id":"c1","car_id":"car-001","name":"reunlock",'
        b'"issued_at":1795000000.0,"expires_at":1795000060.0,"args":{"reservation_id":"r1"}},'
        b'"sig":"TEROnAiOOLscj4FJKK7LEt52qhlHEYf9Y4QQ6ong+NcvyzTNT4zd018Fa3d/LlMrnX5pMpoPROikvITOUXgPCA=="}'
    )
    body = signing.verify(PUBLIC, m.decode(frame), m.Command.KIND)
    assert m.Command.from_body(body) == cmd


def test_altered_forged_and_misdirected_messages_do_not_verify():
    # SPEC X-SEC-1
    snap = m.Snapshot("car-001", 1795000000.0, BOOKINGS)
    signed = signing.sign(KEY, m.Snapshot.KIND, snap.to_body())
    assert m.Snapshot.from_body(signing.verify(PUBLIC, signed, "snapshot")) == snap
    altered = json.loads(json.dumps(signed))
    altered["body"]["bookings"]["reservations"][0]["end"] += 3600
    forged = signing.sign(OTHER, m.Snapshot.KIND, snap.to_body())
    as_command = {**signed, "kind": "command"}
    unsigned = {"kind": "snapshot", "body": snap.to_body()}
    garbage_sig = {**signed, "sig": "!!!"}
    bad: object
    for bad in (altered, forged, unsigned, garbage_sig, [], "x"):
        with pytest.raises(signing.SignatureError):
            signing.verify(PUBLIC, bad, "snapshot")
    with pytest.raises(signing.SignatureError, match="kind"):
        signing.verify(PUBLIC, as_command, "snapshot")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.pop("car_id"), "car_id"),
        (lambda b: b.update(car_id="car/2"), "car_id"),
        (lambda b: b.update(v=2), "v"),
        (lambda b: b.update(issued_at="now"), "issued_at"),
        (lambda b: b["bookings"].update(version=0), "bookings.version"),
        (lambda b: b["bookings"]["reservations"][0].update(end=1), "bookings.reservations[0].end"),
        (
            lambda b: b["bookings"]["reservations"][0].update(driver_id="XXY00009001"),
            "bookings.reservations[0].driver_id",
        ),
        (
            lambda b: b["bookings"]["drivers"][0].update(licence_expiry="soon"),
            "bookings.drivers[0].licence_expiry",
        ),
        (
            lambda b: b["bookings"]["drivers"][0].update(cards=["0102030405060708"]),
            "bookings.drivers[0].cards[0]",
        ),
        (
            lambda b: b["bookings"]["drivers"][0].update(strong_cards=["b" * 64]),
            "bookings.drivers[0].strong_cards",
        ),
    ],
)
def test_a_bad_snapshot_is_refused_naming_the_field(change, field):
    body = json.loads(json.dumps(m.Snapshot("car-001", 1795000000.0, BOOKINGS).to_body()))
    change(body)
    with pytest.raises(m.MessageError) as refused:
        m.Snapshot.from_body(body)
    assert refused.value.field == field


def test_bad_commands_and_events_are_refused_naming_the_field():
    value: object
    good = m.Command.new("car-001", "start", 1795000000.0, 60, reservation_id="r1").to_body()
    for key, value, field in (
        ("name", "self_destruct", "name"),
        ("expires_at", 1794999999.0, "expires_at"),
        ("args", [], "args"),
        ("id", "", "id"),
    ):
        with pytest.raises(m.MessageError) as refused:
            m.Command.from_body({**good, key: value})
        assert refused.value.field == field
    event = m.Event("e1", "car-001", 1, "trip_started", 1795000000.0, {}).to_body()
    assert m.Event.from_body(event).seq == 1
    for key, value in (
        ("seq", 0),
        ("seq", True),
        ("type", "DROP TABLE"),
        ("data", None),
        ("at", float("nan")),
    ):
        with pytest.raises(m.MessageError) as refused:
            m.Event.from_body({**event, key: value})
        assert refused.value.field == key


def test_payloads_that_are_not_json_objects_are_refused():
    for payload in (b"", b"\xff\xfe", b"[1]", b"null", b"{" * 10, b" " * (m.MAX_PAYLOAD + 1)):
        with pytest.raises(m.MessageError, match="payload"):
            m.decode(payload)


@given(st.binary(max_size=300))
def test_no_payload_crashes_the_decoder(payload):
    # SPEC X-SEC-3: refused with MessageError or SignatureError, never anything else.
    try:
        body = signing.verify(PUBLIC, m.decode(payload), "snapshot")
    except (m.MessageError, signing.SignatureError):
        return
    raise AssertionError(f"random bytes verified: {body}")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_no_json_value_crashes_the_validators(value):
    for kind in (m.Snapshot, m.Command, m.Event, m.State, m.Online):
        with contextlib.suppress(m.MessageError):
            kind.from_body(value if isinstance(value, dict) else {"v": 1, "x": value})

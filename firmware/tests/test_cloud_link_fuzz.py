"""Hypothesis fuzzes what arrives on the topics the car subscribes to (`reservations`,
`commands`), through a real Mosquitto into a car unit in this process: random bytes, random JSON,
envelopes with random bodies and signatures, bodies signed with the cloud's own key but not
matching the contract, and byte flips of valid signed messages. Each is refused with a log line;
the unit keeps running and keeps its state (SPEC X-SEC-3, X-SEC-1), and valid messages still work
afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firmware.tests.cloud_side import (
    CLOUD_KEY,
    CloudClient,
    LinkedCar,
    command_frame,
    running,
    snapshot_frame,
    wait_for,
)
from firmware.tests.harness import HOUR, START, bookings
from protocol import messages, signing, topics

CAR = "car-001"
TOPICS = [topics.topic(CAR, "reservations"), topics.topic(CAR, "commands")]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
# bodies shaped like the contract's, with any value in any field
contract_keys = st.sampled_from(
    ["v", "car_id", "issued_at", "bookings", "id", "name", "expires_at", "args", "version"]
)
bodies = st.dictionaries(contract_keys, json_values, max_size=8) | st.dictionaries(
    st.text(max_size=10), json_values, max_size=5
)
kinds = st.sampled_from(["snapshot", "command"]) | st.text(max_size=10)
signatures = st.binary(min_size=0, max_size=80).map(lambda b: base64.b64encode(b).decode())


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(encode),
    st.builds(lambda k, b, s: encode({"kind": k, "body": b, "sig": s}), kinds, bodies, signatures),
    # signed by the cloud's own key, but not a message of the contract: from_body refuses it
    st.builds(lambda k, b: messages.encode(signing.sign(CLOUD_KEY, k, b)), kinds, bodies),
)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_fuzzed_payloads_on_the_cars_topics_are_refused_and_change_nothing(tmp_path):
    # SPEC X-SEC-3, X-SEC-1
    records = Records()
    logger = logging.getLogger("firmware.cloud_link")
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    with running() as b, CloudClient(b) as cloud:
        car = LinkedCar(tmp_path, b, START - HOUR)
        try:
            wait_for(car.connected)
            cloud.snapshot(CAR, bookings(5).to_dict(), car.clock.now())
            wait_for(lambda: car.bookings_version() == 5)
            held = (car.store.load(), car.store.last_seq())
            valid = {
                TOPICS[0]: snapshot_frame(CAR, bookings(6).to_dict(), car.clock.now()),
                TOPICS[1]: command_frame(CAR, "c-valid", "locate", car.clock.now()),
            }

            def taken() -> int:
                counts = car.link.counts()
                return sum(counts.get(k, 0) for k in ("refused", "snapshots", "commands"))

            def refuse(topic: str, payload: bytes) -> None:
                counts = car.link.counts()
                before, received = counts.get("refused", 0), counts["received"]
                lines = len(records.lines)
                cloud.publish(topic, payload)

                def done() -> bool:
                    now = car.link.counts()["received"]
                    return now > received and taken() == now

                wait_for(done, what="the message")
                assert car.link.counts()["refused"] == before + 1, payload[:200]
                new = records.lines[lines:]
                assert any("refused a message on " + topic in line for line in new), new
                assert (car.store.load(), car.store.last_seq()) == held

            @settings(
                max_examples=120,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                derandomize=True,
            )
            @given(topic=st.sampled_from(TOPICS), payload=payloads)
            def anything(topic: str, payload: bytes) -> None:
                refuse(topic, payload)

            @settings(max_examples=80, deadline=None, derandomize=True)
            @given(
                topic=st.sampled_from(TOPICS),
                position=st.integers(min_value=0),
                bit=st.integers(0, 7),
            )
            def flipped(topic: str, position: int, bit: int) -> None:
                frame = bytearray(valid[topic])
                frame[position % len(frame)] ^= 1 << bit
                # a flip that left the same JSON (none should) would be a valid message
                with contextlib.suppress(ValueError):
                    assume(json.loads(frame) != json.loads(valid[topic]))
                refuse(topic, bytes(frame))

            anything()
            flipped()
            assert car.link.counts()["refused"] >= 150  # the examples did reach the unit
            assert car.runner.core is not None and car.state == "idle"
            # still serving: a valid snapshot and a valid command go through
            cloud.publish(TOPICS[0], valid[TOPICS[0]])
            wait_for(lambda: car.bookings_version() == 6, what="a valid snapshot after the fuzz")
            cloud.publish(TOPICS[1], valid[TOPICS[1]])
            wait_for(lambda: cloud.events_of(CAR, "command_result"), what="a valid command")
        finally:
            car.close()
            logger.removeHandler(records)

"""The link's framing, byte for byte: scripted frames with their exact bytes, the same frames
built by the board (MicroPython) and by the unit (CPython), each end decoding the other's bytes,
and noise costing no more than the frame it touches."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boards.common import link
from boards.tests.mpy import run

# name: (how to build it, its bytes on the wire)
VECTORS = {
    "hello": ("command(1, 'hello', 1)", "00 09 01 01 10 01 a5 ff f0 89 00"),
    "heartbeat": ("command(2, 'heartbeat')", "00 01 07 02 11 a7 c7 9b 62 00"),
    "unlock": ("command(3, 'unlock')", "00 01 07 03 21 98 05 9a 8f 00"),
    "voice 12": ("command(4, 'voice', 12)", "00 04 02 04 26 06 0c 06 f6 45 53 00"),
    "ack": ("ack(4)", "00 04 01 04 02 05 ac c7 72 27 00"),
    "input": (
        "encode(1, INPUT, input_payload(0, True, 123456))",
        "00 04 06 01 30 02 01 08 01 e2 40 d7 ec 5b 91 00",
    ),
    "boot hello": (
        "encode(0, HELLO, Hello(1, 0xBEEF, 3, 0, 'pico', '0.1.0', 'pico-r1').payload())",
        "00 02 1b 06 01 01 be ef 03 01 01 01 18 04 70 69 63 6f 05 30 2e 31 2e 30 07 70 69 63 6f"
        " 2d 72 31 ba eb 94 be 00",
    ),
}


def build_here(expression: str) -> bytes:
    built: bytes = eval(expression, vars(link))  # the same expressions run on the board below
    return built


def test_scripted_frames_have_exactly_these_bytes():
    for name, (expression, wire) in VECTORS.items():
        assert build_here(expression) == bytes.fromhex(wire), name


def test_a_frame_worked_out_by_hand():
    # heartbeat, SEQ 2: body 00 02 11 (LEN 0, SEQ 2, type 0x11), then its CRC-32 (zlib's own,
    # not ours), then COBS: the zero becomes code 01, the six bytes after it code 07
    body = bytes([0, 2, 0x11])
    check = zlib.crc32(body).to_bytes(4, "big")
    assert b"\x00" not in check
    assert link.command(2, "heartbeat") == b"\x00\x01\x07" + body[1:] + check + b"\x00"


def test_both_ends_build_the_same_bytes():
    # the board's MicroPython and the unit's CPython, one module: byte-exact on both
    script = "import json, link\nfrom link import *\nout = {}\n"
    for name, (expression, _wire) in VECTORS.items():
        script += f"out[{name!r}] = ({expression}).hex()\n"
    script += "print(json.dumps(out))\n"
    board = run(script)
    assert {name: bytes.fromhex(h) for name, h in board.items()} == {
        name: build_here(expression) for name, (expression, _w) in VECTORS.items()
    }


def test_each_end_decodes_the_others_bytes():
    unit_built = b"".join(build_here(e) for e, _w in VECTORS.values())
    board = run(
        f"""
import json, link
frames = link.Decoder().feed({unit_built!r})
print(json.dumps([[f.seq, f.kind, f.payload.hex()] for f in frames]))
"""
    )
    here = link.Decoder().feed(unit_built)
    assert board == [[f.seq, f.kind, f.payload.hex()] for f in here if isinstance(f, link.Frame)]
    assert len(board) == len(VECTORS)
    board_built = run(
        """
import json, link
hello = link.Hello(1, 7, 1, 2500, "esp32", "0.1.0", "esp32-devkitc-r1")
status = link.Status((1 << 4) | (1 << 5) | (1 << 7), 99, False, True, 4, 0)
out = link.encode(0, link.HELLO, hello.payload()) + link.ack(9, link.OK, status.payload())
print(json.dumps(out.hex()))
"""
    )
    hello_frame, ack_frame = link.Decoder().feed(bytes.fromhex(board_built))
    assert isinstance(hello_frame, link.Frame) and isinstance(ack_frame, link.Frame)
    hello = link.Hello.parse(hello_frame.payload)
    assert (hello.board, hello.firmware, hello.pinmap, hello.lost_ms) == (
        "esp32",
        "0.1.0",
        "esp32-devkitc-r1",
        2500,
    )
    status = link.Status.parse(ack_frame.payload[1:])
    on = {name for name, value in status.inputs().items() if value}
    assert on == {"tailgate", "key_present", "engine"}
    assert (status.immobiliser, status.keybox, link.LED_PATTERNS[status.led]) == (
        False,
        True,
        "orange_blink",
    )


def test_noise_costs_only_the_frame_it_touches_on_both_ends():
    # SPEC X-SEC-3: garbage on the line is refused; the frames around it arrive intact, however
    # the bytes are cut into reads
    rng = random.Random(3)
    good = [link.command(n, "led", n % 8) for n in range(1, 41)]
    stream = b""
    for frame in good:
        stream += frame
        if rng.random() < 0.5:
            stream += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    cuts = sorted(rng.sample(range(1, len(stream)), 60))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    decoder = link.Decoder()
    here = [item for chunk in chunks for item in decoder.feed(chunk)]
    frames = [f for f in here if isinstance(f, link.Frame)]
    assert [f.seq for f in frames] == list(range(1, 41))
    assert all(f.kind == 0x24 and f.payload == bytes([f.seq % 8]) for f in frames)
    assert any(isinstance(f, link.FrameError) for f in here)
    board = run(
        f"""
import json, link
d = link.Decoder()
out = []
for chunk in {chunks!r}:
    for item in d.feed(chunk):
        out.append(item.reason if isinstance(item, link.FrameError) else item.seq)
print(json.dumps(out))
"""
    )
    assert board == [f.reason if isinstance(f, link.FrameError) else f.seq for f in here]


@given(st.binary(max_size=600))
def test_byte_stuffing_round_trips_and_never_holds_a_zero(data):
    encoded = link.cobs_encode(data)
    assert b"\x00" not in encoded
    assert link.cobs_decode(encoded) == data


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=link.MAX_PAYLOAD))
def test_every_frame_decodes_to_itself(seq, kind, payload):
    wire = link.encode(seq, kind, payload)
    assert link.Decoder().feed(wire) == [link.Frame(seq, kind, payload)]


def test_what_no_frame_may_be_is_refused():
    with pytest.raises(ValueError, match="payload of 65 bytes, at most 64"):
        link.encode(1, 0x20, bytes(65))
    with pytest.raises(ValueError, match="seq and type are bytes"):
        link.encode(256, 0x20)
    with pytest.raises(ValueError, match="longer than 16 bytes"):
        link.Hello(1, 1, 1, 0, "a-board-with-a-long-name", "0.1.0", "x").payload()
    with pytest.raises(ValueError, match="truncated text"):
        link.Hello.parse(link.Hello(1, 1, 1, 0, "pico", "0.1.0", "pico-r1").payload()[:-3])
    with pytest.raises(ValueError, match="no input 10"):
        link.parse_input(bytes([10, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="expected 9"):
        link.Status.parse(b"\x00")

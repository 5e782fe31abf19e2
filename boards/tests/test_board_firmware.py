"""The board's firmware under the MicroPython interpreter, at chosen instants: debounce, every
output pattern, the voice module's bytes, and the board's end of the link (frames, CRC and length
rejection, repeated frames, heartbeat loss, events until acknowledged).

Each test runs the real modules of `boards/common/` in `micropython` with recording pins in place
of the hardware (the board code takes its pins as arguments) and checks what comes out.
"""

from __future__ import annotations

import pytest

from boards.common import link
from boards.tests.mpy import run, run_logged

# Recording stand-ins for the pins, the buzzer and the voice UART, for the scripts below.
RECORDERS = """
import json
WRITES = []
class P:
    def __init__(self, name, level=1):
        self.name, self.level = name, level
    def value(self, *v):
        if v:
            WRITES.append((self.name, v[0]))
            self.level = v[0]
        return self.level
class Buzzer:
    def __init__(self): self.hz, self.duty = 0, 0
    def freq(self, hz): self.hz = hz
    def duty_u16(self, d): self.duty = d; WRITES.append(("buzzer", self.hz if d else 0))
class Uart:
    def __init__(self): self.out = b""
    def write(self, b): self.out += bytes(b); return len(b)
"""

OUTPUTS = (
    RECORDERS
    + """
import outputs
NAMES = ("lock", "unlock", "immobiliser", "hazard", "keybox", "led_red", "led_green", "led_yellow")
PINS = {n: P(n, 0) for n in NAMES}
BUZ, VOICE = Buzzer(), Uart()
out = outputs.Outputs(PINS, BUZ, VOICE, 300, 0, True, True)
"""
)


# ---- debounce --------------------------------------------------------------------------------


def test_a_switch_counts_only_once_it_held_for_the_debounce_time():
    # SPEC X-SEC-3 (no phantom door openings from a bouncing contact): inputs are debounced
    result = run(
        RECORDERS
        + """
import switches
door = P("door", 1)        # a door switch closes to ground when the door opens: on at 0
sw = switches.Switches([(door, 0)], 30, 0)
seen = []
def at(t, level=None):
    if level is not None:
        door.level = level
    seen.extend([[t] + [c[0], c[1], c[2]] for c in sw.poll(t)])
at(0); at(5, 0); at(10, 1); at(20); at(60)    # a 5 ms bounce: nothing
at(100, 0); at(110); at(129)                  # opened at 100: not yet stable at 129
at(130)                                       # stable for 30 ms: reported, stamped 100
at(200, 1); at(205, 0); at(210, 1); at(240)   # bounces while closing: counted from 210
at(260)
print(json.dumps({"seen": seen, "bits": sw.bits()}))
"""
    )
    assert result["seen"] == [[130, 0, True, 100], [240, 0, False, 210]]
    assert result["bits"] == 0


def test_the_debounce_time_is_a_setting():
    result = run(
        RECORDERS
        + """
import switches
engine = P("engine", 1)
sw = switches.Switches([(engine, 0)], 100, 0)
engine.level = 0
early = sw.poll(0) + sw.poll(60)
late = sw.poll(100)
print(json.dumps({"early": early, "late": [list(c) for c in late]}))
"""
    )
    assert result == {"early": [], "late": [[0, True, 0]]}


# ---- outputs ---------------------------------------------------------------------------------

# What the reader shows, every 50 ms over 2 s (sampled mid-slot): R red, G green, Y yellow,
# O red and green together (orange), . dark. SPEC U-FB-1.
LED_TIMELINES = {
    "dark": "." * 40,
    "green_blink": ("G" * 10 + "." * 10) * 2,
    "red_solid": "R" * 40,
    "three_colour_blink": ("R" * 6 + "G" * 6 + "Y" * 6) * 2 + "RRRR",
    "orange_blink": ("O" * 10 + "." * 10) * 2,
    "green_yellow_blink": ("G" * 8 + "Y" * 8) * 2 + "G" * 8,
    "forgotten_blink": "YYY...YYY" + "." * 15 + "YYY...YYY" + "." * 7,
    "error": "RR.." * 10,
}


def test_every_reader_led_pattern():
    # SPEC U-FB-1: the reader's patterns, as a driver sees them
    result = run(
        OUTPUTS
        + """
import link
shown = {}
for i, name in enumerate(link.LED_PATTERNS):
    out.set_led(i, 1000)
    marks = ""
    for k in range(40):
        lv = out.levels(1000 + 25 + 50 * k)
        r, g, y = lv["led_red"], lv["led_green"], lv["led_yellow"]
        marks += "O" if r and g else "R" if r else "G" if g else "Y" if y else "."
    shown[name] = marks
print(json.dumps(shown))
"""
    )
    assert result == LED_TIMELINES
    assert set(result) == set(link.LED_PATTERNS)


def test_the_same_led_pattern_again_keeps_its_rhythm():
    result = run(
        OUTPUTS
        + """
out.set_led(1, 0)
out.set_led(1, 250)      # asked again mid-blink: no restart, no flicker
print(json.dumps([out.levels(t)["led_green"] for t in (100, 400, 600)]))
"""
    )
    assert result == [1, 1, 0]


# The reader every 100 ms (sampled mid-slot) after a refused tap at 0 ms: the unit sends `error`
# and, 3 ms later, what the car shows now (green blink); the board was told to show an error
# for 1 s and an accepted tap for 0.5 s.
PASSING = (
    RECORDERS
    + """
import link, outputs
NAMES = ("lock", "unlock", "immobiliser", "hazard", "keybox", "led_red", "led_green", "led_yellow")
PINS = {n: P(n, 0) for n in NAMES}
E, R, G, D = (link.LED_PATTERNS.index(p) for p in ("error", "red_solid", "green_blink", "dark"))
out = outputs.Outputs(PINS, Buzzer(), Uart(), 300, 0, True, True, {E: 1000, R: 500})
def shown(start, n):
    marks = ""
    for k in range(n):
        lv = out.levels(start + 50 + 100 * k)
        marks += "R" if lv["led_red"] else "G" if lv["led_green"] else "."
    return marks
"""
)


def test_a_refused_taps_error_shows_for_its_time_then_what_the_unit_asked_next():
    # SPEC U-FB-1, U-FB-3: the denial is for a person at the windscreen, not one link round trip
    result = run(
        PASSING
        + """
out.set_led(G, 0)
out.set_led(E, 10000)
out.set_led(G, 10003)                   # the state's pattern follows at once
a = shown(10000, 20)
out.set_led(E, 20000)                   # refused again, nothing after (the pattern stays green)
b = shown(20000, 15)
out.set_led(E, 30000)
out.set_led(D, 30002)
out.set_led(E, 30600)                   # a second refusal mid-error: its full time again
c = shown(30000, 18)
print(json.dumps([a, b, c, out.led == D]))
"""
    )
    error = "R." * 5  # fast red (100 ms steps) for 1 s
    assert result == [
        error + "GGGGG.....",  # then the green blink, starting with its lit half
        error + "GGGGG",
        "R.R.R." + error + "..",
        True,  # the board's status names the pattern it settled to
    ]


def test_an_accepted_tap_shows_solid_red_for_half_a_second_and_a_pattern_may_hold_none():
    # SPEC U-FB-1: red solid when a tap is accepted, then what the state shows
    result = run(
        PASSING
        + """
out.set_led(G, 0)
out.set_led(R, 1000)
out.set_led(D, 1002)
a = shown(1000, 8)
out2 = outputs.Outputs(PINS, Buzzer(), Uart(), 300, 0, True, True)   # no holds: as told
out2.set_led(E, 0)
out2.set_led(G, 2)
print(json.dumps([a, out2.levels(150)["led_red"], out2.levels(150)["led_green"]]))
"""
    )
    assert result == ["RRRRR...", 0, 1]


def test_hazard_lamps_blink_n_times_or_until_told():
    # SPEC U-FB-2: twice on unlock, once on lock, blinking on a failed end
    result = run(
        OUTPUTS
        + """
def lamp(times, until):
    out.set_hazard(times, 0)
    return "".join(str(out.levels(t)["hazard"]) for t in range(200, until, 400))
twice = lamp(2, 2000)
once = lamp(1, 1200)
keep = lamp(255, 20000)
left = out.hazard_left(30000)
out.set_hazard(0, 30000)
stopped = out.levels(30100)["hazard"]
print(json.dumps({"twice": twice, "once": once, "keep": keep[-8:], "left": left,
                  "stopped": stopped}))
"""
    )
    assert result["twice"] == "10100"  # on 400 ms, off 400 ms, twice, then dark
    assert result["once"] == "100"
    assert result["keep"] == "10101010"  # still blinking after 20 s
    assert result["left"] == 255
    assert result["stopped"] == 0


def test_lock_and_unlock_are_pulses_and_never_on_together():
    # SPEC X-SAFE-2 at the relays: an unlock pulse ends; lock and unlock never overlap
    result = run(
        OUTPUTS
        + """
WRITES.clear()
out.lock(0)
out.tick(150)
out.unlock(200)            # during the lock pulse: lock drops before unlock rises
out.tick(499)
out.tick(500)              # the unlock pulse is 300 ms
print(json.dumps(WRITES))
"""
    )
    assert result == [["lock", 1], ["lock", 0], ["unlock", 1], ["unlock", 0]]


def test_immobiliser_and_key_box_are_held():
    result = run(
        OUTPUTS
        + """
start = (out.levels(0)["immobiliser"], out.levels(0)["keybox"])
out.set_immobiliser(False, 10)
out.set_keybox(False, 10)
later = (out.levels(3600000)["immobiliser"], out.levels(3600000)["keybox"])
print(json.dumps([start, later]))
"""
    )
    assert result == [[1, 1], [0, 0]]


def test_buzzer_tones():
    # SPEC U-FB-3: chimes
    result = run(
        OUTPUTS
        + """
import link
tones = {}
for i, name in enumerate(link.TONES):
    out.play_tone(i, 0)
    tones[name] = [out.sound(t)[0] for t in range(0, 1100, 50)]
out.tick(2000)
WRITES.clear()
out.play_tone(3, 5000)
out.tick(5010)
out.tick(5040)
print(json.dumps({"tones": tones, "click": [w for w in WRITES if w[0] == "buzzer"],
                  "duty": BUZ.duty}))
"""
    )
    tones = result["tones"]
    assert (
        tones["chime_ok"][:7] == [2000, 2000, 0, 0, 2600, 2600, 2600]
        and tones["chime_ok"][7:] == [0] * 15
    )
    assert tones["chime_denied"] == [400] * 10 + [0] * 12
    assert tones["warning"] == [1000] * 4 + [0] * 4 + [1000] * 4 + [0] * 4 + [1000] * 4 + [0] * 2
    assert tones["click"] == [3000] + [0] * 21
    assert result["click"] == [["buzzer", 3000], ["buzzer", 0]]
    assert result["duty"] == 0  # silent once done


def test_voice_clips_are_dfplayer_play_commands():
    # SPEC U-FB-4: the board plays a prompt by its clip number (byte-exact DFPlayer frames)
    result = run(
        OUTPUTS
        + """
for clip in (1, 19, 300):
    out.play_clip(clip)
print(json.dumps(VOICE.out.hex()))
"""
    )
    assert bytes.fromhex(result) == bytes.fromhex(
        "7eff06030000 01 fef7 ef7eff06030000 13 fee5 ef7eff06030001 2c fecb ef"
    )


# ---- the board's end of the link ---------------------------------------------------------------

PEER = (
    RECORDERS
    + """
import app, link, struct
SENT, APPLIED = [], []
def apply(name, args, now):
    APPLIED.append([name, list(args), now])
    if name == "unlock" and args:
        raise link.CommandError(link.BAD_ARGS, "no")
    return b""
def write(b):
    SENT.extend(f for f in link.Decoder().feed(b))
hello = link.Hello(link.VERSION, 0xBEEF, 1, 0, "pico", "0.1.0", "pico-r1")
settings = {"heartbeat_timeout_ms": 2000, "event_retry_ms": 200}
peer = app.Peer(write, apply, hello, settings, 0)
def sent():
    out = [[f.seq, f.kind, f.payload.hex()] for f in SENT]
    SENT.clear()
    return out
"""
)


def test_each_command_is_applied_once_and_a_repeat_gets_the_same_answer():
    # SPEC X-SAFE-2: a frame sent again (its ACK was lost) is answered again, not applied again
    result, log = run_logged(
        PEER
        + """
peer.receive(link.command(7, "unlock"), 10)
first = sent()
peer.receive(link.command(7, "unlock"), 20)
again = sent()
peer.receive(link.command(8, "unlock"), 30)
print(json.dumps({"applied": APPLIED, "first": first, "again": again, "next": sent(),
                  "duplicates": peer.duplicates}))
"""
    )
    assert result["applied"] == [["unlock", [], 10], ["unlock", [], 30]]
    assert result["first"] == result["again"] == [[7, link.ACK, "00"]]
    assert result["next"] == [[8, link.ACK, "00"]]
    assert result["duplicates"] == 1
    assert "frame 7 came again: answered again, not applied again" in log


def framed(body: bytes, check: bytes | None = None) -> bytes:
    """A frame on the wire around `body`, with its own CRC unless `check` is given."""
    check = link.crc(body).to_bytes(4, "big") if check is None else check
    return b"\x00" + link.cobs_encode(body + check) + b"\x00"


IMMOBILISER_OFF = bytes([1, 3, 0x22, 0])  # LEN 1, SEQ 3, immobiliser, 0


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        # one bit flipped on the way: the CRC no longer matches
        (framed(bytes([1, 3, 0x22, 1]), link.crc(IMMOBILISER_OFF).to_bytes(4, "big")), "crc"),
        # the length byte says 2 for a payload of 1, the CRC computed over the lie
        (framed(bytes([2, 3, 0x22, 0])), "length"),
        # a length byte beyond what any frame may carry, behind a valid CRC
        (framed(bytes([200, 3, 0x22, 0])), "length"),
        (framed(b"\x01", b""), "short"),
        (b"\x00\x05\x01\x00", "cobs"),  # the stuffing points past the end
        (b"\x00" + b"\x55" * 100 + b"\x00", "overrun"),  # no delimiter for too long
    ],
    ids=["crc", "length-lie", "length-too-big", "short", "cobs", "overrun"],
)
def test_bad_frames_are_dropped_with_a_log_line(wire, reason):
    # SPEC X-SEC-3: malformed input from the serial link is refused with a clear log line
    result, log = run_logged(
        PEER
        + f"""
peer.receive({wire!r}, 10)
peer.receive(link.command(9, "lock"), 20)   # and the link goes on
print(json.dumps({{"applied": APPLIED, "sent": sent(), "bad": peer.bad_frames}}))
"""
    )
    assert result["applied"] == [["lock", [], 20]]
    assert result["sent"] == [[9, link.ACK, "00"]]
    assert result["bad"] == 1
    assert f"link: dropped a bad frame ({reason}:" in log


def test_unknown_commands_and_bad_arguments_are_refused():
    result = run(
        PEER
        + """
peer.receive(link.encode(1, 0x5A, b""), 10)               # no such command
peer.receive(link.encode(2, 0x24, bytes([99])), 20)       # LED pattern 99
peer.receive(link.encode(3, 0x26, b"\\x01"), 30)           # voice needs two bytes
print(json.dumps({"applied": APPLIED, "sent": sent()}))
"""
    )
    assert result["applied"] == []
    assert result["sent"] == [
        [1, link.ACK, f"{link.UNKNOWN:02x}"],
        [2, link.ACK, f"{link.BAD_ARGS:02x}"],
        [3, link.ACK, f"{link.BAD_ARGS:02x}"],
    ]


def test_events_are_sent_until_acknowledged_then_the_next():
    result = run(
        PEER
        + """
peer.receive(link.command(1, "heartbeat"), 0)     # a host is there
sent()
peer.event(link.INPUT, link.input_payload(0, True, 5), 5)
peer.event(link.INPUT, link.input_payload(0, False, 9), 9)
first = sent()
peer.tick(100); early = sent()
peer.tick(205); retried = sent()
peer.receive(link.ack(1), 210)
after_ack = sent()
peer.receive(link.ack(2), 220)
peer.tick(1000)
print(json.dumps({"first": first, "early": early, "retried": retried, "after_ack": after_ack,
                  "idle": sent()}))
"""
    )
    door_open = [1, link.INPUT, link.input_payload(0, True, 5).hex()]
    door_closed = [2, link.INPUT, link.input_payload(0, False, 9).hex()]
    assert result["first"] == [door_open]
    assert result["early"] == []
    assert result["retried"] == [door_open]
    assert result["after_ack"] == [door_closed]
    assert result["idle"] == []


def test_heartbeat_loss_holds_everything_and_is_reported_when_the_host_is_back():
    # the board, not the unit, notices the silence; it changes no output, sends nothing while the
    # host is away, and tells the host how long it was gone once it hears from it again
    result, log = run_logged(
        PEER
        + """
peer.receive(link.command(1, "heartbeat"), 0)
sent()
peer.tick(1999); still = peer.lost
peer.tick(2001); lost = peer.lost
peer.event(link.INPUT, link.input_payload(2, True, 2500), 2500)   # a door opens meanwhile
quiet = sent()
peer.receive(link.command(2, "heartbeat"), 7000)
back = sent()
peer.receive(link.ack(1), 7010)
print(json.dumps({"still": still, "lost": lost, "quiet": quiet, "back": back,
                  "then": sent(), "applied": [a[0] for a in APPLIED]}))
"""
    )
    assert result["still"] is False and result["lost"] is True
    assert result["quiet"] == []
    assert result["back"] == [
        [2, link.ACK, "00"],
        [1, link.LINK_LOST, (7000).to_bytes(4, "big").hex()],  # lost since its last frame at 0
    ]
    assert result["then"] == [[2, link.INPUT, link.input_payload(2, True, 2500).hex()]]
    assert result["applied"] == ["heartbeat", "heartbeat"]  # nothing else: no output moved
    assert "no heartbeat for 2000 ms: holding every output as it is" in log
    assert "the host is back after 7000 ms without heartbeat" in log


def test_a_hello_after_a_loss_carries_the_loss_and_starts_a_new_session():
    result = run(
        PEER
        + """
peer.receive(link.command(5, "lock"), 0)
peer.tick(3000)
sent()
peer.receive(link.command(5, "hello", link.VERSION), 4500)  # a new unit process: seq 5 again
answer = SENT[0]
h = link.Hello.parse(answer.payload[1:])
peer.receive(link.command(6, "lock"), 4600)
print(json.dumps({"lost_ms": h.lost_ms, "boot_id": h.boot_id, "applied": [a[0] for a in APPLIED],
                  "events": [f.kind for f in SENT[1:] if f.kind != link.ACK]}))
"""
    )
    assert result["lost_ms"] == 4500
    assert result["boot_id"] == 0xBEEF
    assert result["applied"] == ["lock", "lock"]
    assert result["events"] == []  # told in the hello's answer, not again as an event

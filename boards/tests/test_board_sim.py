"""The whole board firmware running under MicroPython on the simulated rig, seen from a bare host
on the other end of its cable: its hello, every output, its switches, a lost heartbeat, noise on
the line, a hang and the watchdog, a power cycle."""

from __future__ import annotations

import random
import struct
import time

import pytest

from boards.common import link
from boards.sim.rig import SimBoard
from boards.tests.host import RawHost


def say_hello(host: RawHost) -> link.Hello:
    answer = host.command("hello", link.VERSION)
    assert answer.payload[0] == link.OK
    return link.Hello.parse(answer.payload[1:])


@pytest.mark.parametrize("board", ["pico", "esp32"])
def test_each_board_boots_says_hello_and_names_its_pin_map(tmp_path, board, heap):
    with SimBoard(tmp_path, board, heap=heap) as sim:
        host = RawHost(sim.host_port)
        boot = host.frame()  # sent by itself at boot, before anyone asked
        assert (boot.seq, boot.kind) == (0, link.HELLO)
        hello = say_hello(host)
        host.close()
    assert (hello.version, hello.board, hello.firmware) == (link.VERSION, board, "0.1.0")
    assert hello.pinmap == {"pico": "pico-r1", "esp32": "esp32-devkitc-r1"}[board]
    assert hello.cause == "power_on"
    assert hello.boot_id == link.Hello.parse(boot.payload).boot_id


def test_every_command_drives_its_output(sim, host):
    # SPEC U-FB-1, U-FB-2, U-FB-4: relays, lamps, LEDs, buzzer and voice as the car sees them
    say_hello(host)
    assert sim.output("immobiliser") and sim.output("keybox")  # a new board starts secure
    assert host.command("unlock").payload == bytes([link.OK])
    sim.wait_for(lambda: sim.pulses("unlock") == 1 and not sim.output("unlock"), 1, "a pulse")
    for name, args in [
        ("lock", ()),
        ("immobiliser", (0,)),
        ("keybox", (0,)),
        ("hazard", (2,)),
        ("led", (link.LED_PATTERNS.index("red_solid"),)),
        ("tone", (link.TONES.index("chime_denied"),)),
        ("voice", (14,)),
    ]:
        assert host.command(name, *args).payload == bytes([link.OK]), name
    sim.wait_for(lambda: sim.pulses("hazard") == 2 and not sim.output("hazard"), 3, "2 blinks")
    sim.wait_for(lambda: not sim.output("lock"), 1, "the end of the lock pulse")
    assert sim.pulses("unlock") == 1 and sim.pulses("lock") == 1
    unlock_on, unlock_off = (t for t, _level in sim.edges("unlock")[1:])
    assert 0.25 < unlock_off - unlock_on < 0.6  # a pulse of 300 ms
    assert not sim.output("immobiliser") and not sim.output("keybox")
    # red_solid: an accepted tap's passing feedback, lit for its half second, then dark again
    red = sim.edges("led_red")[1:]  # after the pin's setup at boot
    assert [level for _t, level in red] == [1, 0] and sim.pulses("led_green") == 0
    assert 0.4 < red[1][0] - red[0][0] < 0.8
    assert [(hz, duty > 0) for _t, hz, duty in sim.sound()][-2:] == [(400, True), (400, False)]
    assert sim.voice_clips() == [14]


def test_a_switch_change_is_reported_with_the_board_time_until_acknowledged(sim, host):
    say_hello(host)
    before = host.command("status")
    t0 = link.Status.parse(before.payload[1:]).t_ms
    sim.set_input("door_driver", True)
    event = host.frame()
    name, on, t_ms = link.parse_input(event.payload)
    assert (event.kind, name, on) == (link.INPUT, "door_driver", True)
    assert t_ms >= t0
    again = host.frame(1.0)  # not acknowledged: the board sends it again
    assert again == event
    host.send(link.ack(event.seq))
    assert host.receive(0.5) == []
    status = link.Status.parse(host.command("status").payload[1:])
    assert status.inputs()["door_driver"] and status.inputs()["key_present"]


def test_a_bounce_shorter_than_the_debounce_time_is_not_reported(sim, host):
    say_hello(host)
    sim.set_input("engine", True)
    sim.set_input("engine", False)  # back within a few ms: contact bounce
    assert host.receive(0.3) == []


def test_a_lost_heartbeat_holds_every_output_and_is_reported_when_the_host_is_back(sim, host):
    # the unit is gone (crashed, cable cut): the board keeps the car as it is — it never unlocks
    # by itself — and says how long it was alone when the unit speaks again
    say_hello(host)
    host.command("immobiliser", 0)
    host.command("led", link.LED_PATTERNS.index("green_blink"))
    host.command("hazard", link.KEEP_BLINKING)
    held = {name: sim.pulses(name) for name in ("lock", "unlock")}
    lost = "no heartbeat for 600 ms: holding every output as it is"
    sim.wait_for(lambda: lost in sim.log_text(), 3, "the board to notice the silence")
    sim.set_inputs(door_driver=True, key_present=False, engine=True)
    time.sleep(0.4)
    assert host.receive(0.2) == []  # nothing sent to a host that is not there
    assert {name: sim.pulses(name) for name in ("lock", "unlock")} == held
    assert not sim.output("immobiliser")
    green = sim.edges("led_green")
    hazard = sim.edges("hazard")
    time.sleep(0.6)
    assert len(sim.edges("led_green")) > len(green)  # still blinking as it was told
    assert len(sim.edges("hazard")) > len(hazard)
    host.command("heartbeat")
    report = host.frame()
    assert report.kind == link.LINK_LOST
    (lost_ms,) = struct.unpack(">I", report.payload)
    assert 1000 < lost_ms < 10_000
    host.send(link.ack(report.seq))
    changes = []
    for _ in range(3):  # what happened meanwhile follows, each acknowledged
        event = host.frame()
        changes.append(link.parse_input(event.payload)[:2])
        host.send(link.ack(event.seq))
    assert sorted(changes) == [("door_driver", True), ("engine", True), ("key_present", False)]
    assert sim.resets == []  # the watchdog was fed all along


def test_noise_on_the_line_changes_no_output(sim, host):
    # SPEC X-SEC-3: random bytes are refused with a clear log line; nothing moves; the link goes on
    say_hello(host)
    host.command("led", link.LED_PATTERNS.index("red_solid"))
    sim.wait_output("led_red", True)
    before = {name: sim.edges(name) for name in sim.pins.OUTPUTS}
    rng = random.Random(7)
    sim.inject(bytes(rng.randrange(256) for _ in range(2000)), toward="board")
    time.sleep(0.3)
    assert {name: sim.edges(name) for name in sim.pins.OUTPUTS} == before
    assert "link: dropped a bad frame" in sim.log_text()
    assert host.command("unlock").payload == bytes([link.OK])
    sim.wait_for(lambda: sim.pulses("unlock") == 1, 1, "the unlock pulse")
    assert sim.running and sim.boots == 1


def test_a_hung_board_is_reset_by_its_watchdog_and_keeps_its_held_outputs(sim, host):
    say_hello(host)
    host.command("immobiliser", 0)  # a trip is on: the engine may start
    sim.stall()
    sim.wait_for(lambda: sim.boots == 2, 3, "the watchdog to reset the board")
    sim.wait_running()
    assert sim.resets == ["watchdog"]
    hello = say_hello(host)
    assert hello.cause == "watchdog"
    assert not sim.output("immobiliser")  # as it was before the hang, from its first instant
    assert sim.pulses("immobiliser", boot=2) == 0
    status = link.Status.parse(host.command("status").payload[1:])
    assert status.immobiliser is False and status.keybox is True


def test_a_power_cycle_keeps_the_held_outputs_and_a_new_boot_id(sim, host):
    first = say_hello(host)
    host.command("keybox", 0)
    sim.restart()
    hello = say_hello(host)
    assert hello.boot_id != first.boot_id and hello.cause == "power_on"
    assert not sim.output("keybox") and sim.output("immobiliser")

"""The unit's Body adapter against the real board firmware (MicroPython on the simulated rig) over
a pty: every output of the core, every switch, a board restart in the middle of a session, the
cable pulled and plugged back, noise on the line, a lost acknowledgement, and a board the unit
must refuse."""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from boards.common import link
from boards.sim.rig import SimBoard
from firmware.board_link import BoardLink, LinkTiming
from firmware.effects import (
    LED_PATTERNS,
    Hazard,
    Immobiliser,
    Lock,
    Prompt,
    ReaderLed,
    Report,
    Unlock,
)
from firmware.inputs import (
    BoardLinkChanged,
    BrakeChanged,
    DoorChanged,
    EngineChanged,
    Input,
    KeyChanged,
    LightsChanged,
)
from firmware.prompts import CATALOGUE

# quick, yet patient enough for a busy 2-core CI machine
FAST = LinkTiming(heartbeat_s=0.1, ack_timeout_s=0.25, tries=3, reconnect_s=0.1)
BOARD_SETTINGS = {"heartbeat_timeout_ms": 600, "watchdog_ms": 1000}


class Inbox:
    """What the adapter posted to the runner's queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Input] = queue.Queue()
        self.seen: list[Input] = []

    def post(self, event: Input) -> None:
        self.queue.put(event)

    def wait(self, check: Callable[[Input], bool], timeout: float = 5.0) -> Input:
        """The first input from now on that passes `check` (the ones before it are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"not posted within {timeout} s; saw {self.seen}") from None
            self.seen.append(event)
            if check(event):
                return event

    def link(self, up: bool, timeout: float = 5.0) -> BoardLinkChanged:
        event = self.wait(lambda e: isinstance(e, BoardLinkChanged) and e.up == up, timeout)
        assert isinstance(event, BoardLinkChanged)
        return event

    def drain(self, settle: float = 0.2) -> list[Input]:
        time.sleep(settle)
        out = []
        while not self.queue.empty():
            out.append(self.queue.get())
        self.seen += out
        return out


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimBoard]:
    with SimBoard(tmp_path / "board", "pico", BOARD_SETTINGS) as board:
        yield board


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def body(sim: SimBoard, inbox: Inbox) -> Iterator[BoardLink]:
    adapter = BoardLink(sim.host_port, FAST)
    adapter.start(inbox.post)
    inbox.link(up=True)
    yield adapter
    adapter.stop()


def test_the_unit_checks_the_hello_and_reads_every_switch(sim, inbox, body):
    first = [e for e in inbox.seen if not isinstance(e, BoardLinkChanged)]
    assert first == [
        DoorChanged("driver", False),
        DoorChanged("passenger", False),
        DoorChanged("rear_left", False),
        DoorChanged("rear_right", False),
        DoorChanged("tailgate", False),
        KeyChanged(True, "return"),
        EngineChanged(False),
        BrakeChanged(True),
        LightsChanged(False),
    ]
    up = inbox.seen[-1]
    assert isinstance(up, BoardLinkChanged) and up.reason == "connected"
    assert {k: up.board[k] for k in ("name", "firmware", "pinmap", "reset_cause")} == {
        "name": "pico",
        "firmware": "0.1.0",
        "pinmap": "pico-r1",
        "reset_cause": "power_on",
    }
    status = body.status()
    assert status["up"] is True and status["board"]["pinmap"] == "pico-r1"


def test_every_output_of_the_core_reaches_the_board(sim, body):
    # SPEC U-START-4, U-END-3, U-FB-1..4: what the core asks for is what the car does
    body.apply(Unlock())
    sim.wait_for(lambda: sim.pulses("unlock") == 1 and not sim.output("unlock"), 2, "unlock")
    body.apply(Lock())
    body.apply(Immobiliser(False))
    sim.wait_output("immobiliser", False)
    body.apply(Immobiliser(True))
    body.apply(Hazard(2))
    sim.wait_for(lambda: sim.pulses("hazard") == 2 and not sim.output("hazard"), 3, "2 blinks")
    assert sim.pulses("lock") == 1 and sim.output("immobiliser")
    for pattern, lit in [
        ("green_blink", "green"),
        ("red_solid", "red"),
        ("green_yellow_blink", "green"),
        ("forgotten_blink", "yellow"),
        ("dark", ""),
    ]:
        body.apply(ReaderLed(pattern))  # each starts with its first step at once
        for colour in ("red", "green", "yellow"):
            sim.wait_output(f"led_{colour}", colour == lit)
    for pattern in LED_PATTERNS:  # the board takes every pattern the core has
        body.apply(ReaderLed(pattern))
    for prompt in CATALOGUE:
        body.apply(Prompt(prompt.id))
    sim.wait_for(lambda: len(sim.voice_clips()) == len(CATALOGUE), 2, "every clip")
    assert sim.voice_clips() == [p.clip for p in CATALOGUE]
    body.keybox(False)
    sim.wait_output("keybox", False)
    body.tone("chime_ok")
    sim.wait_for(lambda: any(hz == 2000 and duty for _t, hz, duty in sim.sound()), 2, "a chime")
    commands = body.counters["commands"]
    body.apply(Report("trip_started"))  # not an output: nothing goes to the board
    assert body.counters["commands"] in (commands, commands + 1)  # (+1: a heartbeat meanwhile)


def test_the_switches_reach_the_core(sim, inbox, body):
    # the driver's hand on the car, as the trip core hears it
    for name, on, expected in [
        ("door_driver", True, DoorChanged("driver", True)),
        ("tailgate", True, DoorChanged("tailgate", True)),
        ("key_lend", True, KeyChanged(True, "lend")),
        ("key_present", False, KeyChanged(False, "lend")),
        ("engine", True, EngineChanged(True)),
        ("brake", False, BrakeChanged(False)),
        ("lights", True, LightsChanged(True)),
    ]:
        sim.set_input(name, on)
        assert inbox.wait(lambda e: not isinstance(e, BoardLinkChanged)) == expected, name


def test_a_board_restart_mid_session_is_noticed_and_the_state_sent_again(sim, inbox, body):
    # SPEC U-DATA-1 for the board: after its restart it is told everything again
    body.apply(Immobiliser(False))
    sim.set_input("door_driver", True)
    inbox.wait(lambda e: e == DoorChanged("driver", True))
    sim.restart()
    up = inbox.link(up=True)
    assert up.reason == "board_restarted" and up.board["reset_cause"] == "power_on"
    assert DoorChanged("driver", True) in inbox.seen[-10:]  # every switch read again
    body.apply(Unlock())
    sim.wait_for(lambda: sim.pulses("unlock", boot=2) == 1, 2, "an unlock on the new boot")
    assert body.up


def test_a_hung_board_reset_by_its_watchdog_comes_back(sim, inbox, body):
    sim.stall()
    up = inbox.link(up=True, timeout=5)
    assert up.reason == "board_restarted" and up.board["reset_cause"] == "watchdog"
    assert sim.resets == ["watchdog"]


def test_the_cable_pulled_and_plugged_back(sim, inbox, body, caplog):
    # the link goes down, nothing is sent into the void, the board holds everything, and when
    # the cable is back the core hears it (and re-applies its outputs)
    caplog.set_level(logging.INFO, logger="firmware.board_link")
    body.apply(Immobiliser(False))
    sim.cable(False)
    body.apply(Lock())  # no answer: tried 3 times, then the link is down
    down = inbox.link(up=False)
    assert "no answer to lock after 3 tries" in down.reason
    assert not body.up
    body.apply(Unlock())  # not sent at all while down
    assert "board link down: Unlock not sent" in caplog.text
    lost = "no heartbeat for 600 ms: holding every output as it is"
    sim.wait_for(lambda: lost in sim.log_text(), 3, "the board to notice the silence too")
    sim.cable(True)
    up = inbox.link(up=True)
    assert up.reason == "reconnected" and up.board["lost_ms"] >= 600
    assert sim.pulses("unlock") == 0 and sim.pulses("lock") == 0
    assert not sim.output("immobiliser")  # held through it all
    body.apply(Unlock())
    sim.wait_for(lambda: sim.pulses("unlock") == 1, 2, "the unlock once the cable is back")


def test_random_bytes_on_the_line_are_refused_and_change_nothing(sim, inbox, body, caplog):
    # SPEC X-SEC-3: no crash, no output change, a clear log line on both ends
    caplog.set_level(logging.WARNING, logger="firmware.board_link")
    before = {name: sim.edges(name) for name in sim.pins.OUTPUTS}
    rng = random.Random(11)
    for _ in range(5):
        sim.inject(bytes(rng.randrange(256) for _ in range(300)), toward="host")
        sim.inject(bytes(rng.randrange(256) for _ in range(300)), toward="board")
        time.sleep(0.05)
    time.sleep(0.3)
    assert {name: sim.edges(name) for name in sim.pins.OUTPUTS} == before
    assert "board: dropped a bad frame from the line" in caplog.text
    assert "link: dropped a bad frame" in sim.log_text()
    assert body.counters["bad_frames"] > 0
    assert body.up and not [e for e in inbox.drain() if isinstance(e, BoardLinkChanged)]
    body.apply(Unlock())
    sim.wait_for(lambda: sim.pulses("unlock") == 1, 2, "an unlock after the noise")
    assert sim.running and sim.boots == 1


def test_a_lost_acknowledgement_is_retried_and_the_pulse_happens_once(sim, body):
    # SPEC X-SAFE-2: a command repeated on the line (its ACK was lost) is not applied twice
    sim.lose(toward="host", reads=1)
    body.apply(Unlock())  # returns once the repeat was acknowledged
    assert body.counters["retries"] >= 1
    sim.wait_for(lambda: sim.pulses("unlock") == 1, 2, "the unlock pulse")
    time.sleep(0.3)
    assert sim.pulses("unlock") == 1
    assert "came again: answered again, not applied again" in sim.log_text()


# ---- boards the unit must refuse ----------------------------------------------------------------


class ScriptedBoard:
    """A board that answers hello with a chosen identity (bytes scripted with the link module),
    and records every command it is sent."""

    def __init__(self, hello: link.Hello) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.port = os.ttyname(slave)
        self.hello = hello
        self.received: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        decoder = link.Decoder()
        os.set_blocking(self.master, False)
        while not self._stop:
            try:
                data = os.read(self.master, 1024)
            except BlockingIOError:
                time.sleep(0.005)
                continue
            except OSError:
                return
            for frame in decoder.feed(data):
                if isinstance(frame, link.Frame):
                    name, _args = link.parse_command(frame)
                    self.received.append(name)
                    answer = self.hello.payload() if name == "hello" else b""
                    os.write(self.master, link.ack(frame.seq, link.OK, answer))

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize(
    ("hello", "why"),
    [
        (
            link.Hello(2, 1, 1, 0, "pico", "0.1.0", "pico-r1"),
            "board 'pico' speaks link version 2, this unit 1: not using it",
        ),
        (
            link.Hello(link.VERSION, 1, 1, 0, "pico", "0.0.9", "pico-r1"),
            "board 'pico' runs firmware '0.0.9', older than 0.1.0: not using it",
        ),
        (
            link.Hello(link.VERSION, 1, 1, 0, "pico", "0.1.0", ""),
            "the board did not name itself or its pin map",
        ),
    ],
    ids=["link-version", "old-firmware", "no-pin-map"],
)
def test_a_board_the_unit_cannot_use_is_refused_once_and_loudly(hello, why, caplog):
    caplog.set_level(logging.ERROR, logger="firmware.board_link")
    board = ScriptedBoard(hello)
    inbox = Inbox()
    adapter = BoardLink(board.port, FAST)
    try:
        adapter.start(inbox.post)
        down = inbox.link(up=False)
        assert why in down.reason
        time.sleep(0.4)  # it asks again now and then, and says so only once
        adapter.apply(Unlock())
        assert not adapter.up
        assert set(board.received) == {"hello"}  # nothing else was ever sent
        assert caplog.text.count(why) == 1
        assert not [e for e in inbox.drain(0) if isinstance(e, BoardLinkChanged)]
    finally:
        adapter.stop()
        board.close()


def test_a_board_url_pyserial_cannot_take_is_a_config_error():
    from firmware.config import ConfigError
    from firmware.unit import make_body

    with pytest.raises(ConfigError, match=r"unit\.board: 'nosuch://x' is not a serial port URL"):
        make_body("nosuch://x")
    assert isinstance(make_body("socket://127.0.0.1:9"), BoardLink)


def test_the_unit_and_the_board_know_the_same_names():
    assert set(LED_PATTERNS) <= set(link.LED_PATTERNS)
    assert all(0 < p.clip < 0x10000 for p in CATALOGUE)

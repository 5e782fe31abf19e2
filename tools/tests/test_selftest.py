"""`kagi board selftest`: the real board firmware under MicroPython on the simulated rig, its
outputs read from the car's side of the wiring. A correctly wired car passes every step; a car
with a swapped pair of wires fails exactly those steps; the technician's mode asks and instructs
(issue 8)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boards.common import link
from boards.sim.rig import SimBoard
from firmware.board_link import BoardLink
from firmware.prompts import CATALOGUE
from tools import selftest as st
from tools.cli import main

OUTPUT_IDS = [s.id for s in st.OUTPUT_STEPS]


def selftest(tmp_path: Path, *more: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    args = ["selftest", "--rig", "sim", "--report", str(report), "--input-timeout", "0.6"]
    code = main(["board", *args, *more])
    return code, json.loads(report.read_text(encoding="utf-8"))


def test_a_correctly_wired_car_passes_every_step_and_the_report_is_signed_off(tmp_path, capsys):
    # SPEC U-START-4, U-END-3, U-FB-1, U-FB-2, U-FB-4, U-SEC-5: every output the trip core drives
    # moves the car's part it must, and every switch it reads reports the input it must
    code, report = selftest(tmp_path, "--technician", "A. Tanaka", "--car", "car-001")
    assert code == 0, capsys.readouterr().out
    assert report["passed"] and report["failures"] == []
    ids = [s["id"] for s in report["steps"]]
    assert ids == OUTPUT_IDS + list(link.INPUTS[:5]) + [
        "key_present",
        "key_lend",
        "brake",
        "lights",
        "engine",
    ]
    assert {f"voice_{p.id}" for p in CATALOGUE} <= set(ids)
    assert {"led_red", "led_green", "led_yellow", "keybox_lock", "keybox_release"} <= set(ids)
    assert report["board"]["name"] == "pico" and report["board"]["pinmap"] == "pico-r1"
    assert report["car_id"] == "car-001" and report["mode"] == "rig:sim"
    assert report["signed_off_by"] == "A. Tanaka" and report["signed_off_at"]
    assert report["sha256"] == st.digest(report)
    edited = {**report, "passed": True, "failures": [], "car_id": "car-002"}
    assert st.digest(edited) != report["sha256"]  # an edited report no longer matches
    assert "43 of 43 steps passed" in capsys.readouterr().out


def test_a_swapped_pair_of_wires_is_caught(tmp_path, capsys):
    # SPEC X-SAFE-2: a lock command that moves the unlock actuator would open a parked car; a
    # driver's door reported as the passenger's would let the door timer lock a driver out
    code, report = selftest(
        tmp_path, "--miswire", "lock,unlock", "--miswire", "door_driver,door_passenger"
    )
    assert code == 1
    assert report["failures"] == ["lock", "unlock", "door_driver", "door_passenger"]
    seen = {s["id"]: s["seen"] for s in report["steps"]}
    assert seen["lock"] == "not seen: lock moving; moved instead: unlock"
    assert seen["unlock"] == "not seen: unlock moving; moved instead: lock"
    assert seen["door_driver"] == (
        "door_driver did not turn on in 0.6 s; changed instead: door_passenger"
    )
    assert seen["door_passenger"] == (
        "door_passenger did not turn on in 0.6 s; changed instead: door_driver"
    )
    assert "FAILED: lock, unlock, door_driver, door_passenger" in capsys.readouterr().out
    assert report["signed_off_by"] == "rig:sim (non-interactive)"
    assert not report["passed"] and report["sha256"] == st.digest(report)


def test_miswire_needs_the_rig_and_names_real_wires(tmp_path, capsys):
    assert main(["board", "selftest", "--link", "/dev/null", "--miswire", "lock,unlock"]) == 2
    assert "--miswire needs --rig sim" in capsys.readouterr().err
    assert main(["board", "selftest", "--rig", "sim", "--miswire", "lock,door"]) == 2
    assert "--miswire lock,door: name two of " in capsys.readouterr().err


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[SimBoard, BoardLink]]:
    with SimBoard(tmp_path / "board", "pico") as sim:
        body = BoardLink(sim.host_port)
        body.start(lambda _event: None)
        deadline = time.monotonic() + 5
        while not body.up and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            yield sim, body
        finally:
            body.stop()


class FakeTechnician:
    """Answers every question (as `answers` say where a question names their key, else yes) and
    does what it is told at the car."""

    def __init__(self, sim: SimBoard, answers: dict[str, list[str]]) -> None:
        self.sim = sim
        self.answers = answers
        self.questions: list[str] = []
        self.moves: list[tuple[str, bool]] = []
        self._current: st.InputStep | None = None

    def ask(self, question: str) -> str:
        self.questions.append(question)
        for key, queue in self.answers.items():
            if key in question and queue:
                return queue.pop(0)
        return "y"

    def tell(self, text: str) -> None:
        for step in st.INPUT_STEPS:
            if text == f"> {step.away}":
                self._current = step
                self.sim.set_input(step.input, not step.parked)
                self.moves.append((step.input, not step.parked))
                return
        if text.startswith("> ") and self._current is not None:
            step, self._current = self._current, None
            assert text == f"> {step.back}"
            self.sim.set_input(step.input, step.parked)
            self.moves.append((step.input, step.parked))


def test_the_technician_is_asked_for_every_output_and_told_each_move(board):
    # issue 8: interactive mode; U-FB-4: every voice clip is asked for by its text
    sim, body = board
    tech = FakeTechnician(sim, {"hazard": ["maybe", "n"]})  # a non-answer, then no
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        tech.tell(text)

    technician = st.Technician(tech.ask, say, input_timeout=2.0)
    results = st.run_selftest(body, technician, say, st.InputView(lines.append, tty=False))
    by_id = {r.id: r for r in results}
    assert by_id["hazard"].result == "fail"
    assert by_id["hazard"].seen == "the technician saw otherwise"
    assert [r.id for r in results if r.result != "pass"] == ["hazard"]
    assert "  answer y or n" in lines
    for p in CATALOGUE:
        assert f"Did the voice say 「{p.ja}」 ({p.en})? [y/n] " in tech.questions
    # the board really did each output while the technician watched (the pins' news reaches
    # the rig by its own socket: wait for the last one)
    sim.wait_for(lambda: sim.pulses("lock") == 2, 2, "the lock at the end")  # and at its step
    assert sim.pulses("unlock") == 1
    assert sim.voice_clips() == [p.clip for p in CATALOGUE]
    # each switch away and back, and the inputs shown live as they changed
    assert [m for m in tech.moves if m[0] == "door_driver"] == [
        ("door_driver", True),
        ("door_driver", False),
    ]
    assert any("door_driver:ON" in line for line in lines)
    assert any("engine:ON" in line for line in lines)
    # left at rest: locked, immobilised, key box locked, reader dark
    leds = ("led_red", "led_green", "led_yellow")
    sim.wait_for(
        lambda: (
            sim.output("immobiliser")
            and sim.output("keybox")
            and not any(sim.output(name) for name in leds)
        ),
        2,
        "the outputs at rest",
    )

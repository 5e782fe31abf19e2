"""`kagi board selftest`: the wiring check before a car goes into service.

The self-test speaks to the board over its link (the unit's `BoardLink`, so the unit must be
stopped) and walks through the car:

- **outputs**: every one in turn — door lock, door unlock, immobiliser, hazard lamps, each reader
  LED, the buzzer's tones, every voice clip, the key-box lock — and someone at the car says what
  moved: the technician (`y`/`n`), or on a rig a *fixture* that watches the car's wires;
- **inputs**: the technician opens each door, takes and turns the key, releases and pulls the
  brake, starts the engine, switches the lights, while every input shows live; each must change
  the input it should and no other.

A swapped pair of wires is exactly what this catches: the lock command moving the unlock
actuator, the driver's door reported as the passenger's. The result is a report (JSON) signed off
by the technician, with the board's identity (name, firmware, pin map, flashed build) and a
SHA-256 over its content. Steps are data (`OUTPUT_STEPS`, `INPUT_STEPS`).

Fixtures: `Technician` (interactive: asks and instructs), `SimCar` (the simulated car around a
`boards.sim.rig.SimBoard`, with its wiring — correct or deliberately miswired).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from boards.common import link
from firmware.prompts import CATALOGUE
from tools.options import MissingOption, env_option, need

if TYPE_CHECKING:
    from boards.sim.rig import SimBoard
    from firmware.board_link import BoardLink

Command = tuple[str, tuple[int, ...]]
RELAYS = ("lock", "unlock", "immobiliser", "hazard", "keybox", "led_red", "led_green", "led_yellow")


# ---- the steps, as data ----------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What the car must show after a command: `wire` (a car function: a RELAYS name, `buzzer`
    or `voice`) did `kind`: "pulses" (went on at least `value` times), "level" (is `value`
    now), "sound" (the buzzer sounded), "clip" (the voice module got clip `value`)."""

    wire: str
    kind: str
    value: int = 1


@dataclass(frozen=True)
class OutputStep:
    id: str
    command: Command
    expect: tuple[Expect, ...]
    question: str  # for the technician
    rest: tuple[Command, ...] = ()  # sent after the check: the output back at rest


def _led(pattern: str, lit: str, question: str) -> OutputStep:
    expect = tuple(
        Expect(w, "pulses" if w == lit else "level", 1 if w == lit else 0)
        for w in (
            "led_red",
            "led_green",
            "led_yellow",
        )
    )
    return OutputStep(
        f"led_{lit.removeprefix('led_')}",
        ("led", (link.LED_PATTERNS.index(pattern),)),
        expect,
        question,
        (("led", (link.LED_PATTERNS.index("dark"),)),),
    )


OUTPUT_STEPS: tuple[OutputStep, ...] = (
    OutputStep(
        "lock", ("lock", ()), (Expect("lock", "pulses"),), "Did the doors LOCK (and nothing else)?"
    ),
    OutputStep(
        "unlock",
        ("unlock", ()),
        (Expect("unlock", "pulses"),),
        "Did the doors UNLOCK (and nothing else)?",
    ),
    OutputStep(
        "immobiliser_off",
        ("immobiliser", (0,)),
        (Expect("immobiliser", "level", 0),),
        "Did the immobiliser relay RELEASE (the engine may start)?",
    ),
    OutputStep(
        "immobiliser_on",
        ("immobiliser", (1,)),
        (Expect("immobiliser", "level", 1),),
        "Is the immobiliser ON again (the engine cannot start)?",
    ),
    OutputStep(
        "hazard",
        ("hazard", (1,)),
        (Expect("hazard", "pulses"),),
        "Did the hazard lamps blink (all four corners)?",
        (("hazard", (0,)),),
    ),
    _led("red_solid", "led_red", "Is the reader's RED LED on (and only red)?"),
    _led("green_blink", "led_green", "Is the reader's GREEN LED blinking (and only green)?"),
    _led("forgotten_blink", "led_yellow", "Is the reader's YELLOW LED blinking (only yellow)?"),
    *(
        OutputStep(
            f"tone_{name}",
            ("tone", (i,)),
            (Expect("buzzer", "sound"),),
            f"Did the buzzer sound the {name.replace('_', ' ')} tone?",
        )
        for i, name in enumerate(link.TONES)
    ),
    *(
        OutputStep(
            f"voice_{p.id}",
            ("voice", (p.clip,)),
            (Expect("voice", "clip", p.clip),),
            f"Did the voice say 「{p.ja}」 ({p.en})?",
        )
        for p in CATALOGUE
    ),
    OutputStep(
        "keybox_release",
        ("keybox", (0,)),
        (Expect("keybox", "level", 0),),
        "Did the key box RELEASE (the key can be taken)?",
    ),
    OutputStep(
        "keybox_lock",
        ("keybox", (1,)),
        (Expect("keybox", "level", 1),),
        "Is the key box LOCKED again?",
    ),
)


@dataclass(frozen=True)
class InputStep:
    """One switch of the car, moved away from its parked position and back."""

    input: str  # a link.INPUTS name
    parked: bool  # its value in a parked car
    away: str  # the instruction that changes it
    back: str  # the one that puts it back
    before: tuple[Command, ...] = ()  # commands that make the move possible
    after: tuple[Command, ...] = ()


INPUT_STEPS: tuple[InputStep, ...] = (
    InputStep("door_driver", False, "Open the DRIVER's door.", "Close the driver's door."),
    InputStep("door_passenger", False, "Open the PASSENGER's door.", "Close it."),
    InputStep("door_rear_left", False, "Open the REAR LEFT door.", "Close it."),
    InputStep("door_rear_right", False, "Open the REAR RIGHT door.", "Close it."),
    InputStep("tailgate", False, "Open the TAILGATE.", "Close it."),
    InputStep(
        "key_present",
        True,
        "Take the KEY out of the key box.",
        "Put the key back in the key box.",
        before=(("keybox", (0,)),),
    ),
    InputStep(
        "key_lend",
        False,
        "Turn the key in the box to 貸出 (LEND).",
        "Turn it back to 返却 (RETURN).",
    ),
    InputStep("brake", True, "RELEASE the parking brake.", "Pull the parking brake again."),
    InputStep("lights", False, "Switch the LIGHTS on.", "Switch them off."),
    InputStep(
        "engine",
        False,
        "START the engine (the immobiliser is released for this step).",
        "STOP the engine and put the key back at 返却.",
        before=(("immobiliser", (0,)),),
        after=(("immobiliser", (1,)), ("keybox", (1,))),
    ),
)
PARKED = {s.input: s.parked for s in INPUT_STEPS}
REST: tuple[Command, ...] = (
    ("led", (link.LED_PATTERNS.index("dark"),)),
    ("hazard", (0,)),
    ("immobiliser", (1,)),
    ("keybox", (1,)),
    ("lock", ()),
)


# ---- who watches the car -----------------------------------------------------------------------


class SelftestError(Exception):
    """The self-test could not run (no board answered); the message is one line."""


class Fixture(Protocol):
    """The car's side of the test: what moved after a command, and the switches."""

    name: str
    input_timeout: float

    def mark(self) -> None: ...

    def check(self, step: OutputStep) -> tuple[bool, str]: ...

    def operate(self, input: str, on: bool, instruction: str) -> None: ...


class Technician:
    """The technician at the car: asked after each output, told what to do for each input."""

    name = "technician"

    def __init__(
        self, ask: Callable[[str], str], tell: Callable[[str], None], input_timeout: float = 60.0
    ) -> None:
        self.ask = ask
        self.tell = tell
        self.input_timeout = input_timeout

    def mark(self) -> None:
        pass

    def check(self, step: OutputStep) -> tuple[bool, str]:
        while True:
            answer = self.ask(f"{step.question} [y/n] ").strip().lower()
            if answer in ("y", "yes"):
                return True, "confirmed by the technician"
            if answer in ("n", "no"):
                return False, "the technician saw otherwise"
            self.tell("  answer y or n")

    def operate(self, input: str, on: bool, instruction: str) -> None:
        self.tell(f"> {instruction}")


class SimCar:
    """The simulated car around a SimBoard, wired as `wiring` says: a car function (a RELAYS
    name, or an input) -> the board's pin it is connected to. The default wiring is the pin
    map's; `miswire("lock", "unlock")` swaps two wires as an installer might."""

    name = "rig:sim"

    def __init__(
        self,
        sim: SimBoard,
        wiring: dict[str, str] | None = None,
        timeout: float = 0.5,
        settle: float = 0.06,
        input_timeout: float = 2.0,
    ) -> None:
        self.sim = sim
        self.wiring = dict(wiring or {})
        self.timeout = timeout
        self.settle = settle
        self.input_timeout = input_timeout
        self._pulses: dict[str, int] = {}
        self._sounds = 0
        self._clips = 0

    def miswire(self, a: str, b: str) -> None:
        pa, pb = self.pin(a), self.pin(b)
        self.wiring[a], self.wiring[b] = pb, pa

    def pin(self, wire: str) -> str:
        return self.wiring.get(wire, wire)

    def mark(self) -> None:
        self._pulses = {w: self.sim.pulses(self.pin(w)) for w in RELAYS}
        self._sounds = len(self.sim.sound())
        self._clips = len(self.sim.voice_clips())

    def _met(self, e: Expect) -> bool:
        if e.kind == "pulses":
            return self.sim.pulses(self.pin(e.wire)) - self._pulses[e.wire] >= e.value
        if e.kind == "level":
            return self.sim.output(self.pin(e.wire)) == bool(e.value)
        if e.kind == "sound":
            return any(duty > 0 for _t, _hz, duty in self.sim.sound()[self._sounds :])
        if e.kind == "clip":
            return e.value in self.sim.voice_clips()[self._clips :]
        raise ValueError(f"no expectation kind {e.kind!r}")

    def check(self, step: OutputStep) -> tuple[bool, str]:
        deadline = time.monotonic() + self.timeout
        while not all(self._met(e) for e in step.expect) and time.monotonic() < deadline:
            time.sleep(0.01)
        if any(e.kind in ("pulses", "level") for e in step.expect):
            time.sleep(self.settle)  # long enough for a wrong wire to show itself too
        missing = [e for e in step.expect if not self._met(e)]
        watched = {e.wire for e in step.expect}
        strays = [
            w for w in RELAYS if w not in watched and self.sim.pulses(self.pin(w)) > self._pulses[w]
        ]
        if not missing and not strays:
            return True, "as expected"
        seen = []
        if missing:
            seen.append("not seen: " + ", ".join(_describe(e) for e in missing))
        if strays:
            seen.append("moved instead: " + ", ".join(strays))
        return False, "; ".join(seen)

    def operate(self, input: str, on: bool, instruction: str) -> None:
        self.sim.set_input(self.pin(input), on)


def _describe(e: Expect) -> str:
    if e.kind == "pulses":
        return f"{e.wire} moving"
    if e.kind == "level":
        return f"{e.wire} {'on' if e.value else 'off'}"
    if e.kind == "clip":
        return f"voice clip {e.value}"
    return f"{e.wire} sounding"


# ---- the test --------------------------------------------------------------------------------


@dataclass
class StepResult:
    id: str
    kind: str  # "output" or "input"
    what: str
    result: str  # "pass", "fail", "not run"
    seen: str


@dataclass
class Report:
    board: dict[str, Any]
    mode: str
    started_at: str
    car_id: str = ""
    steps: list[StepResult] = field(default_factory=list)
    finished_at: str = ""
    signed_off_by: str = ""
    signed_off_at: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(s.result == "pass" for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        body = {
            "kagi_selftest": 1,
            **{k: v for k, v in asdict(self).items() if k != "steps"},
            "steps": [asdict(s) for s in self.steps],
            "passed": self.passed,
            "failures": [s.id for s in self.steps if s.result != "pass"],
        }
        body["sha256"] = digest(body)
        return body


def digest(body: dict[str, Any]) -> str:
    """SHA-256 of a report's content (every key but `sha256`, canonical JSON): an edited
    report no longer matches its digest."""
    content = {k: v for k, v in body.items() if k != "sha256"}
    return hashlib.sha256(
        json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class InputView:
    """The inputs, live: rewritten in place on a terminal, a line per change elsewhere."""

    def __init__(self, out: Callable[[str], None], tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.last: dict[str, bool] | None = None

    def show(self, inputs: dict[str, bool]) -> None:
        if inputs == self.last:
            return
        line = "  " + " ".join(f"{n}:{'ON' if v else '-'}" for n, v in inputs.items())
        if self.tty:
            sys.stdout.write("\r" + line)
            sys.stdout.flush()
        else:
            self.out(line)
        self.last = dict(inputs)

    def done(self) -> None:
        if self.tty and self.last is not None:
            sys.stdout.write("\n")
            sys.stdout.flush()


def run_selftest(
    body: BoardLink,
    fixture: Fixture,
    say: Callable[[str], None],
    view: InputView | None = None,
    outputs: tuple[OutputStep, ...] = OUTPUT_STEPS,
    inputs: tuple[InputStep, ...] = INPUT_STEPS,
) -> list[StepResult]:
    """Every output, then every input; the board left at rest (locked, immobilised, key box
    locked, LEDs dark). A link that stops answering ends the test: the rest is "not run"."""
    from firmware.board_link import BoardLinkError, BoardRefused

    view = view or InputView(say, False)
    results: list[StepResult] = []
    todo: list[tuple[str, str]] = [("output", s.id) for s in outputs] + [
        ("input", s.input) for s in inputs
    ]

    def read() -> dict[str, bool]:
        return link.Status.parse(body.command("status")).inputs()

    def settled() -> dict[str, bool]:
        """The inputs once two reads a debounce apart agree: a switch just moved has landed."""
        last = read()
        for _ in range(20):
            time.sleep(0.05)
            now = read()
            if now == last:
                break
            last = now
        return last

    try:
        for c in REST[:-1]:
            body.command(c[0], *c[1])
        time.sleep(0.1)  # the relays land before anything is watched (a real one takes ~10 ms)
        parked = read()
        odd = [n for n, v in parked.items() if n in PARKED and v != PARKED[n]]
        if odd:
            say(f"note: not as parked: {', '.join(odd)} (doors closed, key in, brake on…)")
        for step in outputs:
            fixture.mark()
            try:
                body.command(step.command[0], *step.command[1])
                ok, seen = fixture.check(step)
            except BoardRefused as exc:
                ok, seen = False, str(exc)
            for c in step.rest:
                body.command(c[0], *c[1])
            results.append(
                StepResult(step.id, "output", step.question, "pass" if ok else "fail", seen)
            )
            say(f"  {'PASS' if ok else 'FAIL'}  {step.id}: {seen}")
        for istep in inputs:
            for c in istep.before:
                body.command(c[0], *c[1])
            seen_all = []
            ok = True
            # away and back again, whatever happened away: the car ends as it was parked
            for target, instruction in ((not istep.parked, istep.away), (istep.parked, istep.back)):
                before = settled()
                fixture.operate(istep.input, target, instruction)
                deadline = time.monotonic() + fixture.input_timeout
                now = before
                view.show(now)
                while now[istep.input] != target and time.monotonic() < deadline:
                    time.sleep(0.02)
                    now = read()
                    view.show(now)
                view.done()
                changed = [n for n in now if n != istep.input and now[n] != before[n]]
                if not ok:
                    continue  # back after a failed move: only to leave the car as parked
                if before[istep.input] == target:
                    ok = False
                    seen_all.append(
                        f"{istep.input} was {'on' if target else 'off'} already before the move"
                    )
                elif now[istep.input] != target:
                    ok = False
                    instead = f"; changed instead: {', '.join(changed)}" if changed else ""
                    seen_all.append(
                        f"{istep.input} did not turn {'on' if target else 'off'} in "
                        f"{fixture.input_timeout:g} s{instead}"
                    )
            for c in istep.after:
                body.command(c[0], *c[1])
            seen = "; ".join(seen_all) or "changed as expected"
            results.append(
                StepResult(istep.input, "input", istep.away, "pass" if ok else "fail", seen)
            )
            say(f"  {'PASS' if ok else 'FAIL'}  {istep.input}: {seen}")
        for c in REST:
            body.command(c[0], *c[1])
    except BoardLinkError as exc:
        done = {(r.kind, r.id) for r in results}
        for kind, name in todo:
            if (kind, name) not in done:
                results.append(StepResult(name, kind, "", "not run", f"the link failed: {exc}"))
        say(f"the board stopped answering: {exc}")
    return results


# ---- the command --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env_option(parser, "--link", "KAGI_LINK", "the board's link port (the unit's `board`)")
    parser.add_argument(
        "--rig",
        choices=("sim", "sim:pico", "sim:esp32"),
        help="non-interactive, on a simulated board (the real firmware) and car it starts",
    )
    parser.add_argument(
        "--miswire",
        action="append",
        default=[],
        metavar="A,B",
        help="with --rig sim: swap two wires of the simulated car (to see the test catch it)",
    )
    env_option(parser, "--technician", "KAGI_TECHNICIAN", "who signs the report off")
    parser.add_argument("--car", default="", help="the car's ID, for the report")
    parser.add_argument("--report", help="where to save the report (default: kagi-selftest-…json)")
    parser.add_argument(
        "--input-timeout",
        type=float,
        help="seconds to wait for each switch to move (60 for a technician, 2 on the rig)",
    )


@contextmanager
def _sim_rig(
    rig: str, miswire: list[str], input_timeout: float | None
) -> Iterator[tuple[str, SimCar]]:
    from boards.sim.rig import SimBoard

    board = rig.partition(":")[2] or "pico"
    with tempfile.TemporaryDirectory(prefix="kagi-selftest-") as tmp, SimBoard(tmp, board) as sim:
        car = SimCar(sim, input_timeout=input_timeout or 2.0)
        for pair in miswire:
            a, _, b = pair.partition(",")
            known = set(RELAYS) | set(link.INPUTS)
            if a not in known or b not in known:
                raise ValueError(f"--miswire {pair}: name two of {', '.join(sorted(known))}")
            car.miswire(a, b)
        yield sim.host_port, car


def run_command(args: argparse.Namespace) -> int:
    from firmware.board_link import BoardLink

    if args.miswire and not args.rig:
        raise MissingOption("--miswire needs --rig sim")
    started = _now()

    def say(text: str) -> None:
        print(text, flush=True)

    with _fixture(args, say) as (url, fixture):
        body = BoardLink(url)
        body.start(lambda _event: None)
        deadline = time.monotonic() + 10
        while not body.up and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            if not body.up:
                raise SelftestError(
                    f"no board answered on {url} within 10 s (is the unit stopped? is it the "
                    "board's link port, not its USB console?)"
                )
            board = dict(body.status()["board"] or {})
            board["link"] = url
            say(
                f"board {board.get('name')} firmware {board.get('firmware')} pin map "
                f"{board.get('pinmap')} build {board.get('build') or '-'} on {url}"
            )
            report = Report(board, fixture.name, started, car_id=args.car)
            report.steps = run_selftest(body, fixture, say, InputView(say, sys.stdout.isatty()))
        finally:
            body.stop()
    report.finished_at = _now()
    failures = [s for s in report.steps if s.result != "pass"]
    say(
        f"{len(report.steps) - len(failures)} of {len(report.steps)} steps passed"
        + (f"; FAILED: {', '.join(s.id for s in failures)}" if failures else "")
    )
    who = args.technician
    if fixture.name == "technician":
        who = who or input("Your name, to sign the report off: ").strip()
        if input(f"Sign off this report as {who}? [y/n] ").strip().lower() not in ("y", "yes"):
            report.note = "not signed off"
            who = ""
    if who or fixture.name != "technician":
        report.signed_off_by = who or f"{fixture.name} (non-interactive)"
        report.signed_off_at = _now()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(args.report or f"kagi-selftest-{args.car or board.get('name')}-{stamp}.json")
    path.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n", "utf-8")
    say(f"report: {path}")
    return 0 if report.passed else 1


@contextmanager
def _fixture(args: argparse.Namespace, say: Callable[[str], None]) -> Iterator[tuple[str, Fixture]]:
    if args.rig:
        with _sim_rig(args.rig, args.miswire, args.input_timeout) as (url, car):
            yield url, car
        return
    url = need(args, "link", "--link", "KAGI_LINK")
    yield url, Technician(input, say, args.input_timeout or 60.0)

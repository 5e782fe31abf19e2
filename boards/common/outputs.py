"""The board's outputs: door lock and unlock relay pulses, the immobiliser and key-box relays
(held), hazard lamps, the reader's LEDs, the buzzer and the voice module.

Every pattern is data below; `tick(now)` sets each pin to what the patterns say at `now`, so the
same code runs on a board (a task ticks it) and in a test (which picks the instants).
"""

import time

from machine import PWM, UART, Pin

RED, GREEN, YELLOW = 1, 2, 4

# Reader LED patterns, by index of link.LED_PATTERNS (SPEC U-FB-1): (LEDs lit, ms) steps that
# repeat; a single step of 0 ms is solid.
LED_STEPS = (
    ((0, 0),),  # dark
    ((GREEN, 500), (0, 500)),  # green_blink: a card start is possible
    ((RED, 0),),  # red_solid: a tap was accepted and is being processed
    ((RED, 300), (GREEN, 300), (YELLOW, 300)),  # three_colour_blink: waiting
    ((RED | GREEN, 500), (0, 500)),  # orange_blink (red and green lit together read as orange)
    ((GREEN, 400), (YELLOW, 400)),  # green_yellow_blink: card registration
    ((YELLOW, 150), (0, 150), (YELLOW, 150), (0, 750)),  # forgotten_blink: a double blink
    ((RED, 100), (0, 100)),  # error: fast red
)
LED_PINS = ("led_red", "led_green", "led_yellow")  # the bits RED, GREEN, YELLOW

HAZARD_ON_MS, HAZARD_OFF_MS = 400, 400
KEEP_BLINKING = 255  # as link.KEEP_BLINKING

# Buzzer tones, by index of link.TONES: (Hz, ms) steps played once; 0 Hz is silence.
TONE_STEPS = (
    ((2000, 100), (0, 60), (2600, 160)),  # chime_ok
    ((400, 500),),  # chime_denied
    ((1000, 200), (0, 200), (1000, 200), (0, 200), (1000, 200)),  # warning
    ((3000, 30),),  # click
)
BUZZER_DUTY = 32768  # half of duty_u16: a square wave


def step_at(steps: tuple[tuple[int, int], ...], elapsed: int) -> int:
    """The value of a repeating pattern `elapsed` ms after it began."""
    total = sum(ms for _value, ms in steps)
    if total == 0:
        return steps[0][0]
    t = elapsed % total
    for value, ms in steps:
        if t < ms:
            return value
        t -= ms
    return steps[-1][0]


def dfplayer_play(clip: int) -> bytes:
    """The DFPlayer Mini's serial command "play track `clip`" (0x03), checksum included."""
    body = bytes([0xFF, 0x06, 0x03, 0x00, (clip >> 8) & 0xFF, clip & 0xFF])
    checksum = -sum(body) & 0xFFFF
    return b"\x7e" + body + bytes([checksum >> 8, checksum & 0xFF]) + b"\xef"


class Outputs:
    """Holds what each output should do and drives the pins to it.

    `relays`: Pin per name: lock, unlock, immobiliser, hazard, keybox, led_red, led_green,
    led_yellow (all active high). `held`: the immobiliser and key-box states to start with.
    `led_hold_ms`: the passing patterns (feedback to a tap), by index, and how many ms each shows
    at least, whatever the unit asks next, so that a person at the windscreen sees it. The unit
    says "refused" and "what the car shows now" in one breath, a few ms apart; the pattern asked
    last shows once the passing one is over.
    """

    def __init__(
        self,
        relays: dict[str, Pin],
        buzzer: PWM,
        voice: UART,
        pulse_ms: int,
        now: int,
        immobiliser: bool,
        keybox: bool,
        led_hold_ms: dict[int, int] | None = None,
    ) -> None:
        self._pins = relays
        self._buzzer = buzzer
        self._voice = voice
        self.pulse_ms = pulse_ms
        self.immobiliser = immobiliser
        self.keybox = keybox
        self._pulse = ""  # "lock" or "unlock" while a pulse runs
        self._pulse_start = now
        self.led = 0  # the pattern the reader settles to (a passing one shows over it)
        self._led_start = now
        self._led_wait = 0  # ms after _led_start that `led` begins to show (under a passing one)
        self._holds = led_hold_ms or {}
        self._passing = -1  # a passing pattern showing over `led`, for _passing_ms
        self._passing_start = now
        self._passing_ms = 0
        self.hazard = 0  # blinks asked for, or KEEP_BLINKING
        self._hazard_start = now
        self._tone = -1
        self._tone_start = now
        self._levels: dict[str, int] = {}
        self._sound = (-1, -1)
        self.tick(now)

    # ---- commands ----

    def lock(self, now: int) -> None:
        self._start_pulse("lock", now)

    def unlock(self, now: int) -> None:
        self._start_pulse("unlock", now)

    def _start_pulse(self, name: str, now: int) -> None:
        self._pulse, self._pulse_start = name, now
        self.tick(now)  # lock and unlock are never on together: the other one drops first

    def set_immobiliser(self, on: bool, now: int) -> None:
        self.immobiliser = on
        self.tick(now)

    def set_keybox(self, locked: bool, now: int) -> None:
        self.keybox = locked
        self.tick(now)

    def set_hazard(self, times: int, now: int) -> None:
        self.hazard, self._hazard_start = times, now
        self.tick(now)

    def set_led(self, pattern: int, now: int) -> None:
        hold = self._holds.get(pattern, 0)
        if hold > 0:  # passing feedback: over what is shown, for its time (again: anew)
            self._passing, self._passing_start, self._passing_ms = pattern, now, hold
        elif pattern != self.led:  # the same pattern again keeps its rhythm
            self.led = pattern
            # under a passing pattern, the new one's rhythm begins when it shows
            self._led_start, self._led_wait = now, self._passing_over(now)
        self.tick(now)

    def _passing_over(self, now: int) -> int:
        """ms until the passing pattern is over (0 when none shows)."""
        if self._passing < 0:
            return 0
        left = self._passing_ms - time.ticks_diff(now, self._passing_start)
        if left <= 0:
            self._passing = -1
            return 0
        return left

    def play_tone(self, tone: int, now: int) -> None:
        self._tone, self._tone_start = tone, now
        self.tick(now)

    def play_clip(self, clip: int) -> None:
        self._voice.write(dfplayer_play(clip))

    def hazard_left(self, now: int) -> int:
        """Blinks still to come (KEEP_BLINKING when it blinks until told)."""
        if self.hazard in (0, KEEP_BLINKING):
            return self.hazard
        done = time.ticks_diff(now, self._hazard_start) // (HAZARD_ON_MS + HAZARD_OFF_MS)
        return max(0, self.hazard - done)

    # ---- driving the pins ----

    def levels(self, now: int) -> dict[str, int]:
        """What every pin should show at `now`."""
        if self._pulse and time.ticks_diff(now, self._pulse_start) >= self.pulse_ms:
            self._pulse = ""
        out = {
            "lock": 1 if self._pulse == "lock" else 0,
            "unlock": 1 if self._pulse == "unlock" else 0,
            "immobiliser": 1 if self.immobiliser else 0,
            "keybox": 1 if self.keybox else 0,
            "hazard": 0,
        }
        if self.hazard_left(now):
            t = time.ticks_diff(now, self._hazard_start) % (HAZARD_ON_MS + HAZARD_OFF_MS)
            out["hazard"] = 1 if t < HAZARD_ON_MS else 0
        if self._passing_over(now):
            lit = step_at(LED_STEPS[self._passing], time.ticks_diff(now, self._passing_start))
        else:
            shown = time.ticks_diff(now, self._led_start) - self._led_wait
            lit = step_at(LED_STEPS[self.led], max(0, shown))
        for bit, name in enumerate(LED_PINS):
            out[name] = (lit >> bit) & 1
        return out

    def sound(self, now: int) -> tuple[int, int]:
        """(Hz, duty_u16) of the buzzer at `now`."""
        if self._tone < 0:
            return (0, 0)
        steps = TONE_STEPS[self._tone]
        elapsed = time.ticks_diff(now, self._tone_start)
        if elapsed >= sum(ms for _hz, ms in steps):
            self._tone = -1
            return (0, 0)
        hz = step_at(steps, elapsed)
        return (hz, BUZZER_DUTY) if hz else (0, 0)

    def tick(self, now: int) -> None:
        levels = self.levels(now)
        # a pulse that ends drops before the other one rises
        for name in sorted(levels, key=lambda n: levels[n]):
            if self._levels.get(name) != levels[name] and name in self._pins:
                self._pins[name].value(levels[name])
                self._levels[name] = levels[name]
        sound = self.sound(now)
        if sound != self._sound:
            hz, duty = sound
            if hz:
                self._buzzer.freq(hz)
            self._buzzer.duty_u16(duty)
            self._sound = sound

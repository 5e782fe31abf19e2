"""The car's switches as the board reads them: debounced, reported on change with a board time.

Each switch is a pin and the level at which it is "on" (a door switch closing to ground is on at
0). A change counts once the new level has held for `debounce_ms`; it is reported with the time
it began, so the host sees when the door actually moved.
"""

import time

from machine import Pin


class Switches:
    def __init__(self, pins: list[tuple[Pin, int]], debounce_ms: int, now: int) -> None:
        """`pins`: (pin, active level) per input, in the order of link.INPUTS."""
        self._pins = pins
        self.debounce_ms = debounce_ms
        first = [self._read(i) for i in range(len(pins))]
        self.stable = list(first)
        self._seen = list(first)
        self._since = [now] * len(pins)

    def _read(self, i: int) -> bool:
        pin, active = self._pins[i]
        return bool(pin.value() == active)

    def poll(self, now: int) -> list[tuple[int, bool, int]]:
        """The changes that became stable by `now`: (index, value, time it began) each."""
        changes: list[tuple[int, bool, int]] = []
        for i in range(len(self._pins)):
            level = self._read(i)
            if level != self._seen[i]:
                self._seen[i] = level
                self._since[i] = now
            elif (
                level != self.stable[i] and time.ticks_diff(now, self._since[i]) >= self.debounce_ms
            ):
                self.stable[i] = level
                changes.append((i, level, self._since[i]))
        return changes

    def bits(self) -> int:
        """Every stable value, bit i for input i."""
        out = 0
        for i, on in enumerate(self.stable):
            if on:
                out |= 1 << i
        return out

"""Clocks: the system's, and a manual one that moves only when told (tests and the rig)."""

from __future__ import annotations

import threading
import time


class SystemClock:
    def now(self) -> float:
        return time.time()

    def timeout(self, until: float | None) -> float | None:
        return None if until is None else max(0.0, until - self.now())


class ManualClock:
    """Time stands still until `advance()` or `set()`; it never runs backwards."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"the clock cannot go back ({seconds} s)")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, t: float) -> float:
        with self._lock:
            if t < self._now:
                raise ValueError(f"the clock cannot go back (from {self._now} to {t})")
            self._now = t
            return self._now

    def timeout(self, until: float | None) -> float | None:
        return None  # nothing falls due until someone moves the clock

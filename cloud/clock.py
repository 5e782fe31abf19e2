"""The cloud's clocks: the system's, and a file the HIL rig writes so the cloud runs on car time.

Every part of the cloud takes its time from a `Clock` (a callable returning an aware UTC
datetime). `kagi cloud serve --clock file:PATH` makes them all read `PATH`, which holds the time
as seconds since the epoch; the rig moves it forward (writing atomically) together with the cars'
clocks, so ten car minutes pass at once for the cloud too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ClockError(ValueError):
    """A clock that cannot be used; the message says why."""


class FileClock:
    """The time written in a file (seconds since the epoch), read anew on every call."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self()  # refuse an unreadable file at once, not at the first request

    def __call__(self) -> dt.datetime:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ClockError(f"clock file {self.path}: {exc}") from None
        try:
            seconds = float(text)
        except ValueError:
            raise ClockError(
                f"clock file {self.path}: expected seconds since the epoch, got {text[:40]!r}"
            ) from None
        return dt.datetime.fromtimestamp(seconds, dt.UTC)

    @staticmethod
    def write(path: str | Path, seconds: float) -> None:
        """Set the time in `path` atomically (a reader never sees half a number)."""
        target = Path(path)
        temporary = target.with_name(target.name + ".new")
        temporary.write_text(f"{seconds:.6f}\n", encoding="ascii")
        temporary.replace(target)


def parse_clock(text: str) -> Clock:
    """`system` or `file:PATH`; raises ClockError naming what is wrong."""
    if text == "system":
        return system_clock
    if text.startswith("file:") and len(text) > len("file:"):
        return FileClock(text[len("file:") :])
    raise ClockError(f"expected 'system' or 'file:PATH', got {text!r}")

"""Deadlines, not threads: named points in time kept with the trip state.

Nothing here reads a clock. The runner asks `next_due()` to size its wait and fires what is due
with `pop_due(now)`, earliest first, so a clock jump replays the deadlines in the order they would
have fired. Because they are plain data they are saved with the state and resume after a restart.
"""

from __future__ import annotations


class Deadlines:
    def __init__(self, items: dict[str, float] | None = None) -> None:
        # kept by reference: the dict is the one saved with the trip state
        self._due: dict[str, float] = items if items is not None else {}

    def set(self, name: str, at: float) -> None:
        self._due[name] = at

    def cancel(self, *names: str) -> None:
        for name in names:
            self._due.pop(name, None)

    def get(self, name: str) -> float | None:
        return self._due.get(name)

    def next_due(self) -> float | None:
        return min(self._due.values(), default=None)

    def pop_due(self, now: float) -> tuple[str, float] | None:
        """The earliest deadline at or before `now`, removed; ties go by name for determinism."""
        due = [(at, name) for name, at in self._due.items() if at <= now]
        if not due:
            return None
        at, name = min(due)
        del self._due[name]
        return name, at

    def to_dict(self) -> dict[str, float]:
        return dict(sorted(self._due.items()))

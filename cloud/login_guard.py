"""Slows down and reports repeated wrong passwords (SPEC P-WEB-5), for the API and the pages.

Failures are counted per account and per client address in a sliding window. Past
`free_attempts` in the window (for an address, which many drivers may share behind one NAT,
`address_free_attempts`), each further attempt must wait: 2 s, doubling with each failure,
up to `max_wait`; an attempt made sooner is refused unread (HTTP 429 with the seconds to wait),
so a guesser gets a handful of tries an hour instead of thousands a minute. The slow-down
starting is reported once: a warning naming the account and the address (never the password),
and `on_report` (the console's alerts). Kept in memory, per cloud node, on the injected clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("kagi.login")


class TooManyAttempts(Exception):
    def __init__(self, who: str, wait: float) -> None:
        super().__init__(f"too many wrong passwords for {who}; try again in {wait:.0f} s")
        self.wait = wait


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    reported: bool = False


class LoginGuard:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        free_attempts: int = 5,
        address_free_attempts: int = 20,
        window: float = 3600.0,
        max_wait: float = 900.0,
        on_report: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.free_attempts = {"account": free_attempts, "address": address_free_attempts}
        self.window = window
        self.max_wait = max_wait
        self.on_report = on_report
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}

    def _keys(self, account_id: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("account", account_id[:64])]
        if address:
            keys.append(("address", address))
        return keys

    def _record(self, kind: str, name: str, now: float) -> _Record:
        record = self._records.setdefault(f"{kind}:{name}", _Record())
        record.failures = [t for t in record.failures if now - t < self.window]
        if not record.failures:
            record.reported = False  # a new run of failures is reported again
        return record

    def _wait(self, kind: str, record: _Record, now: float) -> float:
        over = len(record.failures) - self.free_attempts[kind]
        if over < 0 or not record.failures:
            return 0.0
        delay = min(self.max_wait, 2.0 * 2**over)
        return max(0.0, float(record.failures[-1] + delay - now))

    def check(self, account_id: str, address: str | None) -> None:
        """Before checking a password: raise TooManyAttempts if this one must wait."""
        now = self.clock()
        with self._lock:
            for kind, name in self._keys(account_id, address):
                wait = self._wait(kind, self._record(kind, name, now), now)
                if wait > 0:
                    raise TooManyAttempts(f"this {kind}", wait)

    def failed(self, account_id: str, address: str | None) -> None:
        now = self.clock()
        reports = []
        with self._lock:
            for kind, name in self._keys(account_id, address):
                record = self._record(kind, name, now)
                record.failures.append(now)
                if len(record.failures) >= self.free_attempts[kind] and not record.reported:
                    record.reported = True
                    reports.append((kind, name, len(record.failures)))
        for kind, name, count in reports:
            log.warning(
                "%d wrong passwords within %.0f min for %s %s (account %s, address %s)",
                count,
                self.window / 60,
                kind,
                name,
                account_id[:64],
                address or "-",
            )
            if self.on_report is not None:
                self.on_report(kind, name, count)

    def succeeded(self, account_id: str, address: str | None) -> None:
        """A right password clears the account's count (not the address's: one guesser may try
        many accounts from one address)."""
        with self._lock:
            self._records.pop(f"account:{account_id[:64]}", None)

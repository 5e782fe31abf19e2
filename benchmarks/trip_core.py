"""How fast the car unit decides: tap → unlock and tap → lock through the runner, with the
SQLite commit (WAL, synchronous=FULL) included. Prints one table; `make bench` runs it.

The guide allows about 10 s for each (its unit asks the centre); ours decides from what it holds.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._stats import pct
from firmware.bookings import Bookings, Driver, Reservation
from firmware.clock import ManualClock
from firmware.config import TripConfig
from firmware.effects import Lock, Unlock
from firmware.fakes import FakeBody, FakeCloudLink, FakeReader
from firmware.inputs import BookingsChanged, CardTapped, DoorChanged, KeyChanged
from firmware.runner import Runner
from firmware.store import SqliteStore
from protocol.cards import card_hash

TRIPS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")  # the fleet key card hashes are keyed by
ALICE, ALICE_ID = bytes.fromhex("0101010101010101"), "XXY00001001"  # her card, her driver ID
START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))).timestamp()
DAY = 24 * 3600


def bookings(trip: int) -> Bookings:
    """What the car holds for trip `trip`: Alice's two-hour reservation on day `trip`."""
    start = START + trip * DAY
    reservation = Reservation(f"r{trip}", ALICE_ID, start, start + 7200)
    alice = Driver(ALICE_ID, "2030-12-31", frozenset({card_hash(KEY, ALICE)}))
    return Bookings(trip + 1, (reservation,), {ALICE_ID: alice})


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        clock = ManualClock(START - 3600)
        body = FakeBody()
        runner = Runner(TripConfig(), KEY, store, body, FakeReader(), FakeCloudLink(), clock)
        runner.start()
        unlock_ms: list[float] = []
        lock_ms: list[float] = []
        for trip in range(TRIPS):
            runner.step(BookingsChanged(bookings(trip)))
            clock.set(START + trip * DAY)
            t = time.perf_counter()
            effects = runner.step(CardTapped(ALICE))
            unlock_ms.append((time.perf_counter() - t) * 1000)
            assert Unlock() in effects, effects
            runner.step(DoorChanged("driver", True))
            runner.step(KeyChanged(False, "lend"))
            runner.step(DoorChanged("driver", False))
            clock.advance(3600)
            runner.step(KeyChanged(True, "return"))
            t = time.perf_counter()
            effects = runner.step(CardTapped(ALICE))
            lock_ms.append((time.perf_counter() - t) * 1000)
            assert Lock() in effects, effects
            clock.advance(601)
            runner.step(None)
        store.close()
    print(f"{'operation':<24}{'trips':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'guide':>8}")
    for name, values in (("tap -> unlock decision", unlock_ms), ("tap -> lock decision", lock_ms)):
        print(
            f"{name:<24}{len(values):>7}{statistics.median(values):>10.2f}"
            f"{pct(values, 0.99):>10.2f}{max(values):>10.2f}{'10 s':>8}"
        )
    print("(runner step incl. the core and the SQLite commit with fsync; no board, no reader)")


if __name__ == "__main__":
    main()

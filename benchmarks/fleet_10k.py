"""Ten thousand cars on one Mosquitto (issue 15): each its own broker account and ACL, all
subscribed, every one holding its verified snapshot; then reservation → car (the verified
snapshot held) p50/p99 with all of them connected, and the cloud's memory and CPU while idle.

The cars are paho clients in processes of their own (2,500 a process, one thread each driving
them over `select`), as in `benchmarks/sync.py`; the cloud's sync runs in this process, so its
resident memory and CPU are this process's. Goal: p99 ≤ 1 s. Prints, never asserts.
`python -m benchmarks.fleet_10k [CARS] [SAMPLES]`.
"""

from __future__ import annotations

import datetime as dt
import logging
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks._stats import pct
from benchmarks.sync import (
    CLOUD_PASSWORD,
    JST,
    POLICY,
    Cars,
    car_id,
    driver_id,
    setup,
    wait,
)
from cloud.auth import Caller
from cloud.mosquitto import CLOUD_USER, Mosquitto
from cloud.service import Cloud
from cloud.store import open_store
from cloud.sync import CloudSync, SyncConfig, public_key

CARS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
SAMPLES = int(sys.argv[2]) if len(sys.argv) > 2 else 200
PER_PROCESS = 2_500


class Fleets:
    """Several fleet processes, one handle: `cars` split over them in order."""

    def __init__(
        self, broker: Mosquitto, cars: int, key: str, outbox: dict[str, list[bytes]] | None = None
    ) -> None:
        self.parts: list[tuple[int, Cars]] = []
        for first in range(0, cars, PER_PROCESS):
            n = min(PER_PROCESS, cars - first)
            mine = None
            if outbox is not None:
                mine = {car_id(i): outbox.get(car_id(i), []) for i in range(first, first + n)}
            self.parts.append((first, Cars(broker, n, key, first=first, outbox=mine)))

    def status(self) -> tuple[int, int]:
        answers = [fleet.ask("status") for _, fleet in self.parts]
        return sum(a[0] for a in answers), sum(a[1] for a in answers)

    def seen(self, index: int, rid: str, timeout: float) -> float | None:
        for first, fleet in self.parts:
            if first <= index < first + PER_PROCESS:
                result: float | None = fleet.ask("seen", car_id(index), rid, timeout)
                return result
        raise IndexError(index)

    def close(self) -> None:
        for _, fleet in self.parts:
            fleet.close()


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="kagi-bench-10k-") as tmp:
        db = open_store(str(Path(tmp) / "fleet.db"))
        began = time.monotonic()
        setup(db, CARS, SAMPLES)
        accounts = {
            CLOUD_USER: CLOUD_PASSWORD,
            **{car_id(i): f"pw-{car_id(i)}" for i in range(CARS)},
        }
        with Mosquitto(accounts) as broker:
            config = SyncConfig(f"mqtt://{broker.host}:{broker.port}", password=CLOUD_PASSWORD,
                                worker=f"bench-{uuid.uuid4().hex[:6]}")  # fmt: skip
            with CloudSync(db, POLICY, config) as sync:
                fleets = Fleets(broker, CARS, public_key(db))
                try:
                    wait(lambda: fleets.status()[0] == CARS, 600, "every car subscribed", 0.5)
                    subscribed = time.monotonic() - began
                    wait(lambda: fleets.status()[1] >= CARS, 600, "every first snapshot", 0.5)
                    held = time.monotonic() - began
                    time.sleep(5)
                    rss, cpu0 = rss_mib(), cpu_s()
                    time.sleep(20)
                    idle_cpu = (cpu_s() - cpu0) / 20 * 100
                    cloud = Cloud(db, POLICY, lambda: dt.datetime.now(dt.UTC), cars=sync)
                    base = dt.datetime.now(JST).replace(hour=0, minute=0, second=0, microsecond=0)
                    base += dt.timedelta(days=1)
                    ms = []
                    for k in range(SAMPLES):
                        index = (k * 7919) % CARS
                        who = driver_id(k)
                        start = base + dt.timedelta(hours=k)
                        t0 = time.perf_counter()
                        view = cloud.reserve(Caller(who, "driver", who[:8]), car_id(index), start,
                                             start + dt.timedelta(minutes=30))  # fmt: skip
                        seen = fleets.seen(index, view.reservation.reservation_id, 10.0)
                        if seen is None:
                            raise SystemExit(f"car {car_id(index)} never got its reservation")
                        ms.append((seen - t0) * 1000)
                finally:
                    fleets.close()
        db.close()
    print(f"{CARS:,} cars on one Mosquitto, each its own account and ACL (SQLite store)")
    print("| measure | value | goal |")
    print("| --- | --- | --- |")
    print(f"| every car connected and subscribed | {subscribed:.0f} s after start | |")
    print(f"| every car holding its first verified snapshot | {held:.0f} s after start | |")
    print(f"| reservation → car, p50 / p99 ({len(ms)} samples) | "
          f"{pct(ms, 0.5):.1f} / {pct(ms, 0.99):.1f} ms | p99 ≤ 1 s |")  # fmt: skip
    print(f"| the cloud idle with every car connected: resident memory | {rss:.0f} MiB | |")
    print(f"| … CPU (20 s) | {idle_cpu:.1f} % of a core | |")


if __name__ == "__main__":
    main()

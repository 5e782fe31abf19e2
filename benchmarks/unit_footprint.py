"""The car unit's footprint: `kagi unit run` (sim reader and board, no cloud, the manual clock)
as its own process, measured from outside through /proc and strace.

- cold start: process start → the control socket accepting (the unit has restored its state and
  would take a tap), median of 5;
- memory: resident set idle, and its high-water mark after the trips;
- CPU while idle, over 10 s, in % of one core;
- per trip (bookings pushed, tap, doors, key, engine, drive, position, return, brake, tap to end,
  the forgotten-item window over): the bytes the process writes to its database (every write or
  pwrite to unit.db and its WAL, and the same rounded up to 4 KiB flash pages) and its fsyncs,
  counted by strace over 20 trips;
- flash wear: the years an 8 GB industrial card of 3,000 erase cycles lasts at 30 trips a day,
  from the page-rounded bytes, with ideal wear levelling.

Goals (issue 15): RSS ≤ 60 MB, idle CPU ≤ 1 % of a core, cold start ≤ 1 s. Prints, never asserts.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from protocol import signing
from protocol.cards import card_hash
from tools.rig.unit_process import UnitProcess

KEY = "00112233445566778899aabbccddeeff"
ALICE = "0101010101010101"
ALICE_ID = "XXY00001001"
T0 = 1_767_225_600.0  # 2026-01-01 09:00 JST
HOUR = 3600.0
TRIPS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
PAGE = 4096
CARD_BYTES, CYCLES, TRIPS_A_DAY = 8e9, 3000, 30


def config(folder: Path, cloud: str = "none:") -> None:
    """A unit on the sim adapters; `cloud` its link (`none:`, or a broker URL)."""
    folder.mkdir(parents=True, exist_ok=True)
    link = f'cloud = "{cloud}"\n'
    if cloud != "none:":
        key = signing.public_key_hex(signing.new_private_key())
        link += f'cloud_public_key = "{key}"\n'

    (folder / "unit.toml").write_text(
        "[unit]\n"
        'car_id = "car-bench"\n'
        f'card_key = "{KEY}"\n'
        'database = "unit.db"\n'
        'reader = "sim:"\nboard = "sim:"\n' + link + 'clock = "manual"\n'
        f"clock_start = {T0 - HOUR}\n"
        'control = "control.sock"\n',
        encoding="utf-8",
    )


def trip(n: int) -> list[dict[str, Any]]:
    start = T0 + n * 3 * HOUR
    bookings = {
        "version": n + 1,
        "reservations": [
            {"id": f"r{n}", "driver_id": ALICE_ID, "start": start, "end": start + HOUR}
        ],
        "drivers": [
            {
                "id": ALICE_ID,
                "licence_expiry": "2199-12-31",
                "cards": [card_hash(bytes.fromhex(KEY), bytes.fromhex(ALICE))],
            }
        ],
    }
    door = lambda is_open: {"op": "door", "door": "driver", "open": is_open}  # noqa: E731
    return [
        {"op": "set_time", "t": start - 10 * 60},
        {"op": "bookings", "bookings": bookings},
        {"op": "set_time", "t": start},
        {"op": "tap", "idm": ALICE},
        door(True),
        {"op": "key", "present": False, "position": "lend"},
        door(False),
        {"op": "engine", "running": True},
        {"op": "advance", "seconds": 20 * 60},
        {"op": "position", "lat": 36.4466, "lon": 140.6065},
        {"op": "vehicle", "odometer_km": 1000.0 + n * 12, "fuel_pct": 70},
        {"op": "advance", "seconds": 20 * 60},
        {"op": "engine", "running": False},
        {"op": "key", "present": True, "position": "return"},
        door(True),
        door(False),
        {"op": "tap", "idm": ALICE},
        {"op": "advance", "seconds": 11 * 60},  # the forgotten-item window closes
    ]


def row(measure: str, value: str, goal: str = "") -> None:
    print(f"| {measure} | {value} | {goal} |")


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def idle(unit: UnitProcess) -> tuple[int, float]:
    """The unit's resident bytes once settled, and its CPU over 10 s of nothing (% of a core)."""
    assert unit.proc is not None
    pid = unit.proc.pid
    time.sleep(2)
    rss = proc_status(pid)["VmRSS"]
    before = cpu_seconds(pid)
    time.sleep(10)
    return rss, (cpu_seconds(pid) - before) / 10 * 100


def run_trips(unit: UnitProcess, trips: int) -> None:
    for n in range(trips):
        for request in trip(n):
            answer = unit.request(request)
            if not answer.get("ok"):
                raise SystemExit(f"trip {n}: {request} → {answer}")


def cold_starts(folder: Path) -> list[float]:
    times = []
    for _ in range(5):
        unit = UnitProcess(folder)
        began = time.perf_counter()
        unit.start()
        times.append(time.perf_counter() - began)
        unit.close()
    return times


def traced_writes(folder: Path, trips: int) -> tuple[int, int, int]:
    """(bytes written, bytes rounded to flash pages, fsyncs) for `trips` trips, by strace."""
    unit = UnitProcess(folder)
    unit.start()
    assert unit.proc is not None
    log = folder / "strace.log"
    tracer = subprocess.Popen(
        [
            "strace",
            "-f",
            "-qq",
            "-y",  # each descriptor with its path: storage told from sockets and logs
            "-e",
            "trace=write,pwrite64,fsync,fdatasync",
            "-o",
            str(log),
            "-p",
            str(unit.proc.pid),
        ],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # strace attaches to every thread
    run_trips(unit, trips)
    tracer.terminate()
    tracer.wait(10)
    unit.close()
    written = pages = syncs = 0
    for line in log.read_text().splitlines():
        # e.g. pwrite64(7</tmp/…/unit.db-wal>, "…", 4120, 0) = 4120: only the unit's database
        call = re.search(r"(write|pwrite64|fsync|fdatasync)\(\d+<([^>]*)>", line)
        result = re.search(r"= (\d+)$", line)
        if call is None or result is None or not Path(call[2]).name.startswith("unit.db"):
            continue
        if call[1] in ("fsync", "fdatasync"):
            syncs += 1
        else:
            n = int(result[1])
            written += n
            pages += -(-n // PAGE) * PAGE
    return written, pages, syncs


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="kagi-footprint-"))
    try:
        config(folder)
        starts = cold_starts(folder)
        unit = UnitProcess(folder)
        unit.start()
        assert unit.proc is not None
        rss, idle_cpu = idle(unit)
        run_trips(unit, TRIPS)
        after = proc_status(unit.proc.pid)
        unit.close()
        print(f"car unit footprint (kagi unit run, sim adapters, no cloud; {TRIPS} trips)")
        print("| measure | value | goal |")
        print("| --- | --- | --- |")
        row(
            "cold start to accepting taps, median of 5",
            f"{statistics.median(starts) * 1000:.0f} ms",
            "≤ 1 s",
        )
        row("resident memory, idle", f"{rss / 2**20:.1f} MiB", "≤ 60 MB")
        row(
            "resident memory, high-water after the trips",
            f"{after['VmHWM'] / 2**20:.1f} MiB",
            "≤ 60 MB",
        )
        print(f"| CPU while idle (10 s) | {idle_cpu:.2f} % of a core | ≤ 1 % |")
        linked = folder / "linked"
        config(linked, "mqtt://car-bench:pw@127.0.0.1:9")  # paho and the keys loaded, no broker
        starts_linked = cold_starts(linked)
        unit = UnitProcess(linked)
        unit.start()
        rss_linked, cpu_linked = idle(unit)
        unit.close()
        row(
            "… with the MQTT link (no broker): cold start",
            f"{statistics.median(starts_linked) * 1000:.0f} ms",
            "≤ 1 s",
        )
        row(
            "… with the MQTT link: resident memory, idle",
            f"{rss_linked / 2**20:.1f} MiB",
            "≤ 60 MB",
        )
        row(
            "… with the MQTT link: CPU while idle, reconnecting",
            f"{cpu_linked:.2f} % of a core",
            "≤ 1 %",
        )
        if shutil.which("strace") is None:
            print("| writes per trip | (strace not installed) | |")
            return
        config(folder / "traced")
        written, pages, syncs = traced_writes(folder / "traced", TRIPS)
        per_day = pages / TRIPS * TRIPS_A_DAY
        years = CARD_BYTES * CYCLES / per_day / 365
        print(f"| bytes written per trip | {written / TRIPS:,.0f} B | |")
        print(f"| … rounded to 4 KiB flash pages | {pages / TRIPS:,.0f} B | |")
        print(f"| fsyncs per trip | {syncs / TRIPS:.1f} | |")
        print(
            f"| 8 GB card, {CYCLES:,} erase cycles, {TRIPS_A_DAY} trips a day | "
            f"{years:,.0f} years | |"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

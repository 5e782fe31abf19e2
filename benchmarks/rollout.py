"""A rollout to a fleet of real car units (issue 16, SPEC O-OTA-1): from the operator's
`kagi cloud rollout start` of a published release to every car healthy on it, and the bytes each
car downloaded for it.

Every part is real and runs on this machine (tools/rig/update_fleet.py): one `kagi cloud serve`
with its update repository and embedded broker, and CARS units each under `kagi unit launch`
(two processes per car), provisioned with `kagi unit provision`. The release is this checkout's
wheel as 0.2.0 with the board files of the pico; two canaries go first. Each car downloads over
HTTP, verifies with python-tuf, unpacks into its other slot, restarts into it and passes its
start-up check; the cloud counts it healthy when its report arrives. The fleet's set-up (start,
provisioning) is not in the figure. Prints, never asserts.
`python -m benchmarks.rollout [CARS]` (default 100).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from cloud.store import open_store
from tools.release_cli import build_wheel
from tools.rig.update_fleet import UpdateFleet

CARS = int(sys.argv[1]) if len(sys.argv) > 1 else 100


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wheel = build_wheel(folder / "wheel")
        began = time.monotonic()
        with UpdateFleet(folder / "fleet", CARS, wheel, deadline="300s") as fleet:
            ready = time.monotonic() - began
            fleet.publish("0.2.0")
            start = time.monotonic()
            fleet.kagi("cloud", "rollout", "start", "0.2.0", "--all", "--canaries", "2",
                       *fleet.repo_args)  # fmt: skip
            canaries = 0.0
            while True:
                shown = fleet.rollout()
                if not canaries and shown["stage"] == "rest":
                    canaries = time.monotonic() - start
                if shown["status"] != "running":
                    break
                time.sleep(0.5)
            total = time.monotonic() - start
            with open_store(fleet.db, migrate=False) as store:
                sizes = [
                    int(e.data.get("bytes", 0))
                    for e in store.car_events(type="update_step")
                    if e.data.get("step") == "downloaded"
                ]
            versions = [fleet.firmware(c) for c in fleet.car_ids]
        print(f"rollout to {CARS} real car units (each under kagi unit launch), 2 canaries")
        print(f"  fleet started and provisioned in {ready:.0f} s (not in the figures)")
        print(f"  rollout {shown['status']}: {shown['counts']}; "
              f"{versions.count('0.2.0')} of {CARS} report 0.2.0")  # fmt: skip
        print(f"  start → both canaries healthy: {canaries:.1f} s")
        print(f"  start → every car healthy:     {total:.1f} s")
        if sizes:
            size = wheel.stat().st_size
            print(f"  bytes each car downloaded: median {statistics.median(sizes):,.0f}, "
                  f"max {max(sizes):,} ({len(sizes)} cars; the wheel is {size:,})")  # fmt: skip


if __name__ == "__main__":
    main()

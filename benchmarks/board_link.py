"""How fast the board link is: a command from the unit's Body adapter to the board's output pin,
over a pty, with the real board firmware under the MicroPython unix port (the simulated rig).
1,000 immobiliser commands, on and off in turn; prints one table. `make bench` runs it.

On a real board the serial line adds its own time: 115200 baud carries about 11.5 bytes per ms,
and a command frame is 9 to 12 bytes each way.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from benchmarks._stats import pct
from boards.sim.rig import SimBoard
from firmware.board_link import BoardLink, LinkTiming
from firmware.effects import Immobiliser
from firmware.inputs import BoardLinkChanged, Input

COMMANDS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def moved(sim: SimBoard, edges: int) -> Callable[[], bool]:
    return lambda: len(sim.edges("immobiliser")) > edges


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kagi-bench-") as tmp, SimBoard(tmp) as sim:
        up: list[Input] = []
        body = BoardLink(sim.host_port, LinkTiming(heartbeat_s=0.5))
        body.start(up.append)
        sim.wait_for(lambda: any(isinstance(e, BoardLinkChanged) and e.up for e in up), 5)
        acked: list[float] = []
        output: list[float] = []
        on = sim.output("immobiliser")
        for _ in range(COMMANDS):
            on = not on
            edges = len(sim.edges("immobiliser"))
            t = time.monotonic()
            body.apply(Immobiliser(on))
            acked.append((time.monotonic() - t) * 1000)
            sim.wait_for(moved(sim, edges), 2, "the immobiliser pin")
            output.append((sim.edges("immobiliser")[-1][0] - t) * 1000)
        retries = body.counters["retries"]
        body.stop()
    print(f"board link over a pty, real firmware under MicroPython: {COMMANDS} commands")
    print(f"{'':28}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'mean ms':>9}")
    for name, values in (("command -> output pin", output), ("command -> acknowledged", acked)):
        print(
            f"{name:28}{pct(values, 0.5):8.2f}{pct(values, 0.99):8.2f}{max(values):8.2f}"
            f"{statistics.fmean(values):9.2f}"
        )
    print(f"retries: {retries}")


if __name__ == "__main__":
    main()

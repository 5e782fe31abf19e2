"""Runs a piece of test code under the MicroPython unix port, with the board's modules, the
board's pin map and the simulated `machine` on its path. The code prints one JSON value last;
`run()` returns it (`run_logged()` also what was printed before: the board's log lines), or
fails with everything the interpreter said."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from typing import Any

from boards.sim.rig import BOARDS, heap_args, micropython_command

# The heap the code runs in (`-X heapsize=`); None: the interpreter's default. The board tests
# run under both (boards/tests/conftest.py sets it per test).
HEAP: str | None = None


def run_logged(code: str, board: str = "pico", timeout: float = 20.0) -> tuple[Any, str]:
    env = dict(os.environ)
    env.pop("KAGI_SIM_RIG", None)  # the simulated pins live in memory
    env["MICROPYPATH"] = ":".join(
        [str(BOARDS / "sim"), str(BOARDS / "common"), str(BOARDS / board), ".frozen"]
    )
    proc = subprocess.run(
        [micropython_command(), *heap_args(HEAP), "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise AssertionError(f"micropython exited with {proc.returncode}:\n{out}{proc.stderr!r}")
    lines = out.strip().splitlines()
    assert lines, "micropython printed nothing"
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def run(code: str, board: str = "pico", timeout: float = 20.0) -> Any:
    return run_logged(code, board, timeout)[0]

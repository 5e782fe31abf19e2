"""The simulated chip's start-up, for a board that is flashed like a real one.

    micropython -i boards/sim/chip.py      (cwd: the board's filesystem; stdio: its USB console)

What MicroPython does at reset on a Pico or an ESP32, under the unix port: the current folder
is the board's filesystem, `main.py` runs if it is there, and the REPL follows (`-i`) on the
console — also when `main.py` was interrupted by Ctrl-C (the simulated `machine` watches the
console for it, as the chip's USB stack does) or failed. mpremote drives this REPL with `resume`
(the unix port has no soft reset: it exits, and the rig starts the chip again). `sys.platform`
is the unix port's `linux`; `KAGI_SIM_PLATFORM` says which chip this one plays (`rp2`, `esp32`).
`boards/sim/rig.py` (`SimBoard(..., flashable=True)`) sets it all up.
"""

import os
import sys

SIM = sys.path[0] or "."  # this folder: its machine.py stands in for the chip's
sys.path[:] = ["", ".frozen", SIM]  # as on the chip: the filesystem's root, then frozen modules


def _start() -> None:
    try:
        os.stat("main.py")
    except OSError:
        print("no main.py: REPL")
        return
    try:
        with open("main.py") as f:
            code = f.read()
        exec(code, {"__name__": "__main__"})
    except KeyboardInterrupt:
        print("KeyboardInterrupt: main.py stopped")
    except Exception as exc:  # a chip prints the error and goes on to its REPL
        sys.print_exception(exc)


_start()

"""Runs a board's firmware under the MicroPython unix port, with the simulated `machine`.

    micropython boards/sim/run.py pico [name=value ...]

`pico` or `esp32` picks the pin map (`boards/<board>/pins.py`); each name=value changes one of
app.DEFAULTS (e.g. debounce_ms=50). The environment says where the rig and the host pty are
(see `boards/sim/machine.py`); `boards/sim/rig.py` sets it all up.
"""

import sys

BOARDS = (sys.path[0] or ".") + "/.."  # sys.path[0] is this folder: its machine.py goes first


def main() -> None:
    board = sys.argv[1] if len(sys.argv) > 1 else "pico"
    settings = {}
    for arg in sys.argv[2:]:
        name, _, value = arg.partition("=")
        settings[name] = int(value)
    sys.path[1:1] = [BOARDS + "/" + board, BOARDS + "/common"]
    import app
    import pins

    app.main(pins, settings)


main()

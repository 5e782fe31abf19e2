"""The simulated rig (`kind = "sim"`): a whole car and its cloud as real processes on this
machine, the car's own parts simulated.

On top of what every local rig runs (`tools/rig/local.py`: the cloud, its broker, the car unit,
the relay, the mailbox, the clock):

    boards/sim           the I/O board's firmware under MicroPython, its switches and relays
                         played by the rig, its UART on a pty the unit opens
    the hand             nfcpy's tt3 emulation in the field of the unit's `udp:` reader, a card
                         put in it per tap (what `kagi card emulate` runs)

The rig file's own setting: `board` (pico, esp32), the pin map the simulated board runs.
"""

from __future__ import annotations

import socket

from boards.sim.rig import SimBoard
from tools.rig.local import LocalRig
from tools.rig.processes import free_port
from tools.rig.unit_process import UnitProcess
from tools.sim.drivers import BoardOutputs, BoardSwitches, Hand

# the board's settings on the rig: switches settle fast, relay pulses are short
BOARD_SETTINGS = {"debounce_ms": 10, "pulse_ms": 50}


class SimRig(LocalRig):
    board: SimBoard | None = None

    def _car_start(self) -> tuple[str, str]:
        board = self.rig.setting("board", "pico", ("pico", "esp32"))
        self.reader_url = f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
        self.board = SimBoard(self.folder / "board", board, BOARD_SETTINGS)
        self.board.start()
        return self.board.host_port, self.reader_url

    def _car_before_unit(self) -> None:
        self.card_presenter = Hand(self.reader_url)  # the field is there before the reader

    def _car_bind(self, unit: UnitProcess) -> None:
        assert self.board is not None
        self.switches = BoardSwitches(self.board, unit)
        self.car_outputs = BoardOutputs(self.board)

    def _car_close(self) -> None:
        if self.board is not None:
            self.board.close()

    def _car_logs(self) -> list[tuple[str, str]]:
        return [] if self.board is None else [("board", self.board.log_tail(20))]

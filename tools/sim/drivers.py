"""The simulated car's own drivers: the I/O board's switches and outputs, and the hand at the
reader.

- `BoardSwitches` (CarSwitchesProtocol): the simulated board's input pins (`boards.sim.rig`);
  the GPS and the CAN bus, which the sim has no wires for, through the unit's control socket.
- `BoardOutputs` (CarOutputsProtocol): the board's output pins as they changed, over every boot
  of its firmware; the voice clips it played and the LED patterns it was told, from its console.
- `Hand` (CardPresenterProtocol): the reader's field, nfcpy's tt3 emulation on the unit's `udp:`
  reader (what `kagi card emulate` runs), held for the rig's life; a card is put into it and
  taken away, so the next tap of the same card is a new tap.
"""

from __future__ import annotations

import re
from typing import Any

from boards.common.link import LED_PATTERNS
from boards.sim.rig import SimBoard
from firmware.prompts import CATALOGUE
from tools.card_emulator import CardEmulator, EmulatedCard
from tools.rig.rigfile import RigError
from tools.rig.unit_process import UnitProcess

PROMPT_OF_CLIP = {p.clip: p.id for p in CATALOGUE}


class BoardSwitches:
    def __init__(self, board: SimBoard, unit: UnitProcess) -> None:
        self.board = board
        self.unit = unit

    def set(self, name: str, on: bool) -> None:
        if name not in self.board.pins.INPUTS:
            known = ", ".join(sorted(self.board.pins.INPUTS))
            raise RigError(f"no switch {name!r} on the board; switches: {known}")
        self.board.set_input(name, on)

    def position(self, lat: float, lon: float) -> None:
        self._unit({"op": "position", "lat": lat, "lon": lon})

    def meters(self, odometer_km: float, fuel_pct: float) -> None:
        self._unit({"op": "vehicle", "odometer_km": odometer_km, "fuel_pct": fuel_pct})

    def _unit(self, request: dict[str, Any]) -> None:
        answer = self.unit.request(request)
        if not answer.get("ok"):
            raise RigError(f"the unit refused {request}: {answer.get('error')}")


class BoardOutputs:
    def __init__(self, board: SimBoard) -> None:
        self.board = board

    def level(self, name: str) -> bool:
        return self.board.output(name)

    def levels(self) -> dict[str, bool]:
        return self.board.outputs()

    def edges(self, name: str) -> list[tuple[float, bool]]:
        return [
            (t, bool(level))
            for boot in range(1, self.board.boots + 1)
            for t, level in self.board.edges(name, boot)
        ]

    def wait_level(self, name: str, on: bool, timeout: float) -> None:
        self.board.wait_output(name, on, timeout=timeout)

    def prompts(self) -> list[str]:
        clips = [c for boot in range(1, self.board.boots + 1) for c in self.board.voice_clips(boot)]
        return [PROMPT_OF_CLIP.get(c, f"clip {c}") for c in clips]

    def led_patterns(self) -> list[str]:
        found = re.findall(r"command led \((\d+),\)", self.board.log_text())
        return [LED_PATTERNS[int(i)] for i in found]


class Hand:
    def __init__(self, reader_url: str) -> None:
        self.field = CardEmulator(reader_url)

    def present(self, idm: bytes, master_key: bytes | None = None) -> None:
        """A plain card, or with `master_key` a Lite-S card as `kagi card provision` makes."""
        if master_key is None:
            self.field.present(EmulatedCard.plain(idm))
        else:
            self.field.present(EmulatedCard.strong(idm, master_key))

    def remove(self) -> None:
        self.field.remove()

    def close(self) -> None:
        self.field.stop()

"""A real bench (`kind = "real"`): the USB reader, the flashed I/O board on its serial port, a
fixture board that plays the car's switches and watches its outputs, and a card robot or none.
The cloud, the car unit (this computer in the car's place), the relay, the clock and the mailbox
run as on every local rig (`tools/rig/local.py`).

    [rig]
    kind = "real"
    reader = "usb:054c:06c1"               # the unit's reader, as nfcpy addresses it
    board = "/dev/serial/by-id/…-if00"     # the I/O board's link
    fixture = "/dev/serial/by-id/…-if00"   # the fixture board
    card = "none"                          # or "robot:/dev/ttyACM2"

This build holds the skeleton of the bench's drivers: `FixtureBoard` (CarSwitchesProtocol and
CarOutputsProtocol) and `CardRobot` (CardPresenterProtocol) open their serial lines and say,
naming the step, that their wire protocol is not written yet. The fixture board's firmware (a
second Pico driving the I/O board's inputs through opto-couplers and reading its relay and LED
lines back) comes with the first bench; a scenario needing a feature its rig file does not list
is skipped with the rig's reason.
"""

from __future__ import annotations

from typing import Any

from tools.rig.local import LocalRig
from tools.rig.rigfile import RigError
from tools.rig.unit_process import UnitProcess

NOT_BUILT = "its wire protocol is not written yet (tools/rig/real.py; the first bench brings it)"


class SerialPart:
    """A bench part on a serial line (pyserial's `serial_for_url`), opened at start."""

    what = "part"

    def __init__(self, url: str) -> None:
        import serial

        self.url = url
        try:
            self.port: Any = serial.serial_for_url(url, baudrate=115200, timeout=1.0)
        except (serial.SerialException, ValueError) as exc:
            raise RigError(f"the {self.what} at {url}: {exc}") from None

    def _not_built(self, step: str) -> RigError:
        return RigError(f"the {self.what} at {self.url} cannot {step}: {NOT_BUILT}")

    def close(self) -> None:
        self.port.close()


class FixtureBoard(SerialPart):
    """The car's switches and outputs, through the fixture board."""

    what = "fixture board"

    def set(self, name: str, on: bool) -> None:
        raise self._not_built(f"set {name}")

    def position(self, lat: float, lon: float) -> None:
        raise self._not_built("play the GPS")

    def meters(self, odometer_km: float, fuel_pct: float) -> None:
        raise self._not_built("play the CAN bus")

    def level(self, name: str) -> bool:
        raise self._not_built(f"read {name}")

    def levels(self) -> dict[str, bool]:
        raise self._not_built("read the outputs")

    def edges(self, name: str) -> list[tuple[float, bool]]:
        raise self._not_built(f"record {name}")

    def wait_level(self, name: str, on: bool, timeout: float) -> None:
        raise self._not_built(f"watch {name}")

    def prompts(self) -> list[str]:
        raise self._not_built("hear the voice module")

    def led_patterns(self) -> list[str]:
        raise self._not_built("watch the reader's LEDs")


class CardRobot(SerialPart):
    """A servo that moves a card onto the reader and away."""

    what = "card robot"

    def present(self, idm: bytes, master_key: bytes | None = None) -> None:
        raise self._not_built(f"present card {idm.hex()}")

    def remove(self) -> None:
        raise self._not_built("take the card away")


class RealRig(LocalRig):
    fixture: FixtureBoard | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parts = {key: self.rig.setting(key, "") for key in ("reader", "board", "fixture")}
        missing = [key for key, value in self.parts.items() if not value]
        if missing:
            raise RigError(f"{self.rig.where}: rig.{missing[0]}: a real rig names its {missing[0]}")
        self.card = self.rig.setting("card", "none")
        if self.card != "none" and not self.card.startswith("robot:"):
            raise RigError(f"{self.rig.where}: rig.card: expected none or robot:PORT")

    def _car_start(self) -> tuple[str, str]:
        self.fixture = FixtureBoard(self.parts["fixture"])
        if self.card != "none":
            self.card_presenter = CardRobot(self.card.removeprefix("robot:"))
        return self.parts["board"], self.parts["reader"]

    def _car_bind(self, unit: UnitProcess) -> None:
        assert self.fixture is not None
        self.switches = self.car_outputs = self.fixture

    def _car_close(self) -> None:
        if self.fixture is not None:
            self.fixture.close()

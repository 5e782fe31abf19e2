"""A started rig, spoken to in the car's own words, over the rig's protocols only.

    rig.tap("XXY00001002")            # a demo driver's card, or any IDm
    rig.open_door("driver"); rig.take_key(); rig.brake(False); rig.engine(True)
    rig.park(); rig.drive(km=12)      # GPS at the station; the odometer (CAN)
    rig.advance(minutes=10)           # car time, for the cloud and the car together
    rig.outputs                       # state, doors, immobiliser, hazard blinks, LED, prompts
    mark = rig.mark(); ...; rig.since(mark)
    rig.phone("XXY00001002").reserve(...)
    rig.cut_signal(); rig.power_cut(); rig.power_on()

`Rig` holds one driver per protocol (`tools/rig/protocols.py`); a rig kind (`tools/sim/rig.py`,
`tools/rig/real.py`) binds its drivers in `start()`. Every step waits until the car has taken it
(its status shows the switch, its log the tap), so scenarios need no sleeps.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from cloud.demo import CAR, DEMO_PASSWORD, DRIVER_CARDS, STATION_POSITION
from firmware.prompts import CATALOGUE
from tools.rig.phone import Phone
from tools.rig.protocols import (
    CardPresenterProtocol,
    CarOutputsProtocol,
    CarSwitchesProtocol,
    ClockProtocol,
    CloudViewProtocol,
    MailboxProtocol,
    NetworkProtocol,
    PowerProtocol,
    UnitConsoleProtocol,
)
from tools.rig.rigfile import RigError, RigFile
from tools.rig.wait import WAIT, wait_for

DOORS = ("driver", "passenger", "rear_left", "rear_right", "tailgate")
PROMPT_OF_CLIP = {p.clip: p.id for p in CATALOGUE}
TAPPED, TAKEN_AWAY = "card tapped (", "card taken away"  # the unit's reader says so in its log


@dataclass(frozen=True)
class Mark:
    """Counts at one moment, to see what happened since (`Rig.since`)."""

    unlocks: int
    locks: int
    hazard: int
    prompts: int


class Rig:
    """A rig's drivers and the car's language over them; `start()`, drive, `close()` (or use it as
    a context manager). Subclasses bind the drivers in `start()`."""

    power: PowerProtocol
    card_presenter: CardPresenterProtocol | None
    switches: CarSwitchesProtocol
    car_outputs: CarOutputsProtocol
    clock: ClockProtocol
    network: NetworkProtocol
    cloud: CloudViewProtocol
    unit: UnitConsoleProtocol
    mails: MailboxProtocol

    def __init__(self, rig: RigFile) -> None:
        self.rig = rig
        self._phones: list[Phone] = []

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for phone in self._phones:
            phone.close()
        if getattr(self, "card_presenter", None) is not None:
            assert self.card_presenter is not None
            self.card_presenter.close()

    def logs(self) -> str:
        """The tail of every part's log, for a failing test's report."""
        return ""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the clock ----------------------------------------------------------------------------

    @property
    def now(self) -> dt.datetime:
        return self.clock.now

    def advance(self, minutes: float = 0, seconds: float = 0) -> dt.datetime:
        """Move car time for the cloud and the car together; returns once the car has fired
        what fell due."""
        step = minutes * 60 + seconds
        if step < 0:
            raise RigError("the rig's clock does not go back")
        self.clock.advance(step)
        return self.now

    # ---- the card -----------------------------------------------------------------------------

    def tap(self, card: str, *, strong_key: str | None = None) -> dict[str, Any]:
        """Present the card (an IDm, or a demo driver's ID) until the car has read it, then take
        it away until the reader has seen it go, so the next tap of it is a new tap; the unit's
        status after the tap was handled."""
        if self.card_presenter is None:
            raise RigError(f"rig {self.rig.name!r} has no card presenter")
        idm = bytes.fromhex(DRIVER_CARDS.get(card, card))
        start = self.unit.log_size()
        key = bytes.fromhex(strong_key) if strong_key else None
        self.card_presenter.present(idm, key)
        try:
            wait_for(lambda: TAPPED in self.unit.log_since(start), f"the car to read {idm.hex()}")
        finally:
            self.card_presenter.remove()
        wait_for(lambda: TAKEN_AWAY in self.unit.log_since(start), "the reader to see it go")
        return self.status()  # answered after the tap was handled (the runner is in order)

    # ---- the car's switches -------------------------------------------------------------------

    def open_door(self, door: str = "driver") -> None:
        self._door(door, True)

    def close_door(self, door: str = "driver") -> None:
        self._door(door, False)

    def _door(self, door: str, open_: bool) -> None:
        if door not in DOORS:
            raise RigError(f"no door {door!r}; doors: {', '.join(DOORS)}")
        self.switches.set(f"door_{door}" if door != "tailgate" else "tailgate", open_)
        self._seen(lambda s: s["sensors"]["doors"][door] is open_, f"door {door} open={open_}")

    def take_key(self) -> None:
        """Turn the key to 貸出 (out) and pull it from the key box."""
        self.switches.set("key_lend", True)
        self.switches.set("key_present", False)
        self._seen(lambda s: not s["sensors"]["key_present"], "the key taken")

    def return_key(self) -> None:
        """Put the key in the key box and turn it to 返却 (return)."""
        self.switches.set("key_present", True)
        self.switches.set("key_lend", False)
        self._seen(
            lambda s: s["sensors"]["key_present"] and s["sensors"]["key_position"] == "return",
            "the key returned",
        )

    def brake(self, on: bool) -> None:
        self.switches.set("brake", on)
        self._seen(lambda s: s["sensors"]["brake"] is on, f"brake={on}")

    def engine(self, running: bool) -> None:
        self.switches.set("engine", running)
        self._seen(lambda s: s["sensors"]["engine"] is running, f"engine={running}")

    def lights(self, on: bool) -> None:
        self.switches.set("lights", on)
        self._seen(lambda s: s["sensors"]["lights"] is on, f"lights={on}")

    def park(self, odometer_km: float = 1000.0, fuel_pct: float = 80.0) -> None:
        """The car's position and meters as its GPS and CAN give them: at the station."""
        self.switches.position(*STATION_POSITION)
        self.switches.meters(odometer_km, fuel_pct)

    def drive(self, km: float) -> None:
        """Add `km` to the odometer, the fuel gauge as it is."""
        sensors = self.status()["sensors"]
        self.switches.meters(
            (sensors.get("odometer_km") or 0.0) + km, sensors.get("fuel_pct") or 0.0
        )

    def _seen(self, check: Callable[[dict[str, Any]], Any], what: str) -> None:
        wait_for(lambda: check(self.status()), f"the car to see {what}")

    # ---- what the car does --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.unit.status()

    @property
    def state(self) -> str:
        return str(self.status()["state"])

    def prompts(self) -> list[str]:
        """Every voice prompt the car played, in order, by ID."""
        return self.car_outputs.prompts()

    @property
    def outputs(self) -> dict[str, Any]:
        """The car as a person beside it would see it: from its relays and lamps, the reader's
        LED from what the unit shows."""
        status = self.status()
        return {
            "state": status["state"],
            "overlay": status["overlay"],
            "doors": self.doors(),
            "immobilised": self.car_outputs.level("immobiliser"),
            "hazard_blinks": self.pulses("hazard"),
            "led": status["outputs"]["led"],
            "prompts": self.prompts(),
        }

    def doors(self) -> str:
        """locked / unlocked: whichever relay pulsed last (unknown before either did)."""
        lock, unlock = self._last_rise("lock"), self._last_rise("unlock")
        if lock is None and unlock is None:
            return "unknown"
        return "unlocked" if (unlock or -1.0) > (lock or -1.0) else "locked"

    def _last_rise(self, name: str) -> float | None:
        rises = [t for t, on in self.car_outputs.edges(name) if on]
        return max(rises) if rises else None

    def pulses(self, name: str) -> int:
        """How many times output `name` went on since the rig started."""
        return sum(1 for _, on in self.car_outputs.edges(name) if on)

    def mark(self) -> Mark:
        return Mark(
            self.pulses("unlock"), self.pulses("lock"), self.pulses("hazard"), len(self.prompts())
        )

    def since(self, mark: Mark, settle: float = 0.0) -> dict[str, Any]:
        """What the car did since `mark`: relay pulses, hazard blinks, prompts."""
        if settle:
            time.sleep(settle)
        return {
            "unlocks": self.pulses("unlock") - mark.unlocks,
            "locks": self.pulses("lock") - mark.locks,
            "hazard_blinks": self.pulses("hazard") - mark.hazard,
            "prompts": self.prompts()[mark.prompts :],
        }

    def wait_since(self, mark: Mark, what: str, timeout: float = WAIT, **want: Any) -> None:
        """Wait until `since(mark)` shows at least the counts wanted (unlocks=1, hazard_blinks=2)
        and the prompts wanted (prompts=[...] in that order)."""

        def there() -> bool:
            got = self.since(mark)
            for key, value in want.items():
                if key == "prompts":
                    if not _in_order(value, got["prompts"]):
                        return False
                elif got[key] < value:
                    return False
            return True

        try:
            wait_for(there, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; since the mark: {self.since(mark)}") from None

    def wait_state(self, state: str, timeout: float = WAIT) -> dict[str, Any]:
        status: dict[str, Any] = wait_for(
            lambda: (s := self.status())["state"] == state and s, f"state {state}", timeout
        )
        return status

    def held(self) -> dict[str, Any]:
        """The reservations and drivers the car holds (its saved bookings, S-SYNC-1)."""
        bookings: dict[str, Any] = self.unit.saved()["bookings"]
        return bookings

    def wait_bookings(self, check: Callable[[list[dict[str, Any]]], Any], what: str) -> None:
        """Wait until the reservations the car holds satisfy `check` (S-SYNC-1)."""
        wait_for(lambda: check(self.held()["reservations"]), f"the car to hold {what}")

    # ---- the cloud ----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.cloud.api_url

    def phone(self, driver: str = "XXY00001002", password: str = DEMO_PASSWORD) -> Phone:
        phone = Phone(self.api_url, driver, password)
        self._phones.append(phone)
        return phone

    @property
    def fleet_key(self) -> str:
        return self.cloud.fleet_key

    # ---- the world around ---------------------------------------------------------------------

    def connected(self) -> bool:
        return bool(self.status().get("cloud", {}).get("connected"))

    def wait_online(self) -> None:
        wait_for(self.connected, "the car to connect to the broker")

    def cut_signal(self) -> None:
        """No mobile signal (an underground garage): the car loses the broker."""
        self.network.cut()
        wait_for(lambda: not self.connected(), "the car offline")

    def restore_signal(self) -> None:
        self.network.restore()
        self.wait_online()

    def power_cut(self) -> None:
        """The car unit loses power: whatever it had not saved is gone."""
        self.power.cut()

    def power_on(self) -> None:
        """Power back; the unit's clock, which resumes where it stopped, is told the rig's."""
        self.power.on()
        self.clock.sync()


def _in_order(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(w == g for g in it) for w in wanted)


__all__ = ["CAR", "DOORS", "Mark", "Rig", "RigError"]

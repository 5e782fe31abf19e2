"""A fleet taking a rollout (SPEC O-OTA-1, O-OTA-2, O-OTA-3), every part a real process: one
cloud (`kagi cloud serve` with its update repository and embedded broker) and N car units, each
provisioned by `kagi unit provision` and run under `kagi unit launch` from install slots that
hold version 0.1.0 of this checkout's wheel. The operator makes the keys, publishes releases and
steers rollouts with `kagi`, as in production; the cars' board and reader are the unit's
simulated ones (the sim rig covers the real board firmware and reader).

    with UpdateFleet(folder, 4, wheel) as fleet:
        fleet.publish("0.2.0")
        fleet.kagi("cloud", "rollout", "start", "0.2.0", "--all", *fleet.repo_args)
        fleet.wait_rollout(lambda r: r["status"] == "done", "the rollout to finish")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cloud.rollouts_cli import as_record
from cloud.store import open_store
from firmware.slots import Slots
from tools.rig.launched_unit import LaunchedUnit
from tools.rig.processes import CloudProcess, free_port, run_kagi
from tools.rig.releases import ReleaseKit, restamp
from tools.rig.wait import wait_for

STATION = "st-1"


class UpdateFleet:
    def __init__(self, folder: Path, cars: int, wheel: Path, deadline: str = "20s") -> None:
        self.folder, self.wheel, self.deadline = folder, wheel, deadline
        self.car_ids = [f"car-{n:03}" for n in range(1, cars + 1)]
        self.db = str(folder / "cloud.db")
        self.env = {"KAGI_BROKER_ACCOUNTS": str(folder / "broker.passwd")}
        self.kit = ReleaseKit(folder / "operator")
        self.cloud: CloudProcess | None = None
        self.units: dict[str, LaunchedUnit] = {}
        self.broker_port = 0

    @property
    def repo_args(self) -> tuple[str, ...]:
        return ("--db", self.db, "--repo", str(self.kit.repo))

    def kagi(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        return run_kagi(args, self.folder, self.env, ok)

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.kit.make()
        self.kagi("cloud", "init", "--db", self.db)
        self.kagi("cloud", "add-station", "--db", self.db, STATION, "--name", "Station 1",
                  "--lat", "35.0", "--lon", "139.0")  # fmt: skip
        self.broker_port = free_port()
        self.cloud = CloudProcess(self.folder, free_port(), [
            "--db", self.db, "--broker-port", str(self.broker_port),
            "--updates", str(self.kit.repo),
        ], self.env)  # fmt: skip
        self.cloud.start()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._add_car, self.car_ids))
        for unit in self.units.values():
            unit.spawn()
        for car in self.car_ids:
            self.wait_online(car)

    def _add_car(self, car_id: str) -> None:
        """A technician provisions the car and installs its first version in the slots."""
        assert self.cloud is not None
        folder = self.folder / car_id
        folder.mkdir(parents=True)
        config = folder / "unit.toml"
        self.kagi("unit", "provision", "--config", str(config), "--car-id", car_id,
                  "--cloud-db", self.db, "--station", STATION, "--accounts",
                  self.env["KAGI_BROKER_ACCOUNTS"], "--broker",
                  f"mqtt://127.0.0.1:{self.broker_port}", "--board", "sim:", "--reader", "sim:",
                  "--updates", self.cloud.url,
                  "--updates-root", str(self.kit.root_json))  # fmt: skip
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("[unit]\n", f'[unit]\nupdate_deadline = "{self.deadline}"\n',
                                       1), encoding="utf-8")  # fmt: skip
        slots = Slots(folder / "install")
        slots.first_install(self.wheel, "0.1.0")
        self.units[car_id] = LaunchedUnit(folder, slots.root)

    def close(self) -> None:
        for unit in self.units.values():
            unit.close()
        if self.cloud is not None:
            self.cloud.stop()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- the operator -------------------------------------------------------------------------

    def publish(self, version: str, replace: Mapping[str, bytes] | None = None) -> None:
        """Release `version` of the checkout (its modules replaced by `replace`), published."""
        wheel = restamp(self.wheel, version, self.folder / "wheels", replace)
        self.kit.publish(wheel, version)

    def rollout(self, rollout_id: int = 1) -> dict[str, Any]:
        """What `kagi cloud rollout show ID --json` shows."""
        with open_store(self.db, migrate=False) as store:
            return as_record(store.get_rollout(rollout_id))

    def steps(self, rollout_id: int = 1) -> dict[str, str]:
        return {c["car_id"]: c["step"] for c in self.rollout(rollout_id)["cars"]}

    def wait_rollout(
        self, check: Callable[[dict[str, Any]], Any], what: str, rollout_id: int = 1,
        timeout: float = 120.0,
    ) -> dict[str, Any]:  # fmt: skip
        wait_for(lambda: check(self.rollout(rollout_id)), what, timeout=timeout, interval=0.3)
        return self.rollout(rollout_id)

    # ---- what the cloud knows of the cars -----------------------------------------------------

    def car_status(self, car_id: str) -> tuple[bool | None, dict[str, Any] | None]:
        """(online, last state) as the cloud holds them."""
        with open_store(self.db, migrate=False) as store:
            status = store.car_status(car_id)
        return status.online, status.state

    def firmware(self, car_id: str) -> str | None:
        state = self.car_status(car_id)[1]
        return None if state is None else state.get("firmware")

    def wait_online(self, car_id: str, timeout: float = 60.0) -> None:
        wait_for(lambda: self.car_status(car_id)[0] is True, f"{car_id} online", timeout=timeout)

    def logs(self) -> str:
        parts = [] if self.cloud is None else [("cloud", self.cloud.log_tail(4000))]
        parts += [(car, unit.log_tail(30)) for car, unit in self.units.items()]
        return "\n".join(f"---- {name} ----\n{text}" for name, text in parts)

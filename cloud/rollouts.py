"""Rollouts of a published release to the fleet (SPEC O-OTA-1), the cloud's side.

`start()` checks a rollout before the store records it: the version must be published in the
update repository, the cars must exist, the canaries must be among them. `RolloutDriver` runs
on each cloud node and offers the running rollout's version to each car of its stage that is
online and has not finished (an `update` command, signed like every command), and offers again
after `reoffer_after` to a car that said nothing since (it restarted, or lost its link: offering
twice is harmless). A car that was offline is offered as soon as it is back (O-OTA-2).

What the cars report moves the rollout on (`Store.record_update_step`): canaries healthy, then
the rest; a failing canary stops it (O-OTA-3).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cloud.service import CarOperations, Refused
from cloud.store import InvalidValue, Store
from cloud.store.rollouts import Rollout

log = logging.getLogger("cloud.rollouts")
FLEET_CONFIG = "updates.fleet_config"  # the setting: the fleet configuration every car should run


def push_config(store: Store, published: Sequence[int], version: int) -> None:
    """O-OTA-4: every car is to run fleet configuration `version` (published in the repository)."""
    if version not in published:
        known = ", ".join(map(str, published)) or "none"
        raise InvalidValue(
            "version", f"configuration {version} is not published (published: {known})"
        )
    current = store.get_setting(FLEET_CONFIG)
    if current is not None and version < int(current):
        raise InvalidValue(
            "version",
            f"configuration {version} is older than {current}, sent already: the cars refuse an "
            "older one; publish a newer one",
        )
    store.set_setting(FLEET_CONFIG, str(version))


def start(
    store: Store,
    published: Sequence[str],
    version: str,
    car_ids: Sequence[str],
    canaries: Sequence[str] | int,
    created_by: str,
) -> Rollout:
    """Start offering `version` to `car_ids`; `canaries` names them, or says how many of the
    cars (in the order given) go first."""
    if version not in published:
        known = ", ".join(published) or "none"
        raise InvalidValue("version", f"release {version} is not published (published: {known})")
    if isinstance(canaries, int):
        if canaries < 0:
            raise InvalidValue("canaries", "expected 0 or more")
        canaries = list(dict.fromkeys(car_ids))[:canaries]
    return store.start_rollout(version, car_ids, canaries, created_by)


class RolloutDriver:
    """Per cloud node: sends the running rollout's offers every `interval` seconds."""

    def __init__(
        self,
        store: Store,
        cars: CarOperations,
        *,
        interval: float = 2.0,
        reoffer_after: dt.timedelta = dt.timedelta(minutes=10),
        command_timeout: float = 10.0,
        parallel: int = 16,
    ) -> None:
        self.store, self.cars = store, cars
        self.interval, self.reoffer_after = interval, reoffer_after
        self.command_timeout, self.parallel = command_timeout, parallel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._config_offered: dict[str, float] = {}  # car → when (monotonic) it was offered

    def offer_config_due(self) -> int:
        """O-OTA-4: offer the fleet configuration to every online car that does not report it
        (again after `reoffer_after`); how many took the offer."""
        wanted = self.store.get_setting(FLEET_CONFIG)
        if wanted is None:
            return 0
        version, now = int(wanted), time.monotonic()
        again = self.reoffer_after.total_seconds()
        due = [s.car_id for s in self.store.list_car_status()
               if s.online and s.state is not None and s.state.get("config") != version
               and now - self._config_offered.get(s.car_id, -again) >= again]  # fmt: skip
        if not due:
            return 0
        with ThreadPoolExecutor(min(self.parallel, len(due))) as pool:
            return sum(pool.map(lambda car: self._offer_config(car, version, now), due))

    def _offer_config(self, car_id: str, version: int, now: float) -> bool:
        try:
            result = self.cars.send(car_id, "configure", {"version": version},
                                    self.command_timeout)  # fmt: skip
        except Refused as exc:
            log.info("fleet configuration %s: %s not offered now: %s", version, car_id, exc)
            return False
        self._config_offered[car_id] = now
        return bool(result.get("ok"))

    def offer_due(self) -> int:
        """Offer the version to every car due an offer now; how many cars took the offer."""
        due = self.store.rollout_offers(self.reoffer_after)
        if not due:
            return 0
        with ThreadPoolExecutor(min(self.parallel, len(due))) as pool:
            return sum(pool.map(lambda d: self._offer(*d), due))

    def _offer(self, rollout_id: int, version: str, car_id: str) -> bool:
        try:
            result: dict[str, Any] = self.cars.send(
                car_id, "update", {"version": version}, self.command_timeout
            )
        except Refused as exc:  # offline, not answering: offered again on a later round
            log.info("rollout %s: %s not offered %s now: %s", rollout_id, car_id, version, exc)
            return False
        self.store.rollout_offered(rollout_id, car_id)
        if not result.get("ok"):  # a unit that takes no updates: it will never have it
            code = str(result.get("code"))
            self.store.record_update_step(
                car_id, version, "refused", f"the car refused the offer ({code})"
            )
            return False
        log.info("rollout %s: offered %s to %s", rollout_id, version, car_id)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.offer_due()
                self.offer_config_due()
            except Exception:  # a store that is away for a moment: the next round retries
                log.exception("rollouts: offering failed")
            self._stop.wait(self.interval)

    def __enter__(self) -> RolloutDriver:
        self._thread = threading.Thread(target=self._run, name="rollouts", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.command_timeout + 5)

"""The store's part of fleet updates (SPEC O-OTA-1, O-OTA-3; tables of migration m0005).

A rollout offers one published version to a list of cars in two stages: its canary cars first,
then, once every canary reports healthy, the rest. Each car's last reported step is kept, and
the rollout moves on by itself inside the transaction that records a step, whichever cloud node
takes the event: a canary that rolls back, fails or refuses stops the rollout (`stopped`, with
why); the last car to finish makes it `done`. An operator pauses, resumes or aborts it.

At most one rollout is running or paused at a time, so a car is never offered two versions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloud.store import validate as v
from cloud.store.core import StoreCore
from cloud.store.errors import Conflict, InvalidValue, NotFound
from protocol.messages import UPDATE_STEPS

STATUSES = ("running", "paused", "stopped", "aborted", "done")
ACTIVE = ("running", "paused")
STEPS = ("pending", *UPDATE_STEPS)
FINISHED = ("healthy", "rolled_back", "refused", "failed")  # the car is done with this version
FAILED = ("rolled_back", "refused", "failed")
ROLLOUT_COLS = "rollout_id, version, status, stage, reason, created_by, created_at, updated_at"
CAR_COLS = "car_id, canary, step, reason, offered_at, step_at"
# the action an operator takes → (the statuses it applies to, the status it leaves)
ACTIONS = {
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "abort": (ACTIVE, "aborted"),
}


@dataclass(frozen=True)
class RolloutCar:
    car_id: str
    canary: bool
    step: str
    reason: str
    offered_at: dt.datetime | None
    step_at: dt.datetime | None


@dataclass(frozen=True)
class Rollout:
    rollout_id: int
    version: str
    status: str
    stage: str
    reason: str
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    cars: tuple[RolloutCar, ...] = ()

    def counts(self) -> dict[str, int]:
        """How many cars are at each step."""
        out: dict[str, int] = {}
        for car in self.cars:
            out[car.step] = out.get(car.step, 0) + 1
        return out

    def car(self, car_id: str) -> RolloutCar:
        for car in self.cars:
            if car.car_id == car_id:
                return car
        raise NotFound("rollout car", car_id)


class RolloutStore(StoreCore):
    """Rollouts and each car's step."""

    def start_rollout(
        self, version: str, car_ids: Sequence[str], canaries: Sequence[str], created_by: str
    ) -> Rollout:
        """Offer `version` to `car_ids`, `canaries` (some of them) first."""
        version = v.text(version, "version")
        cars = list(dict.fromkeys(v.text(c, "car_ids") for c in car_ids))
        if not cars:
            raise InvalidValue("car_ids", "a rollout needs at least one car")
        stray = [c for c in canaries if c not in cars]
        if stray:
            raise InvalidValue("canaries", f"not among the rollout's cars: {', '.join(stray)}")
        if len(set(canaries)) == len(cars) and len(cars) > 1:
            raise InvalidValue("canaries", "leave at least one car for after the canaries")
        now = self._time(self._now())
        with self._tx():
            active = self._one(f"SELECT rollout_id, version FROM rollouts WHERE status IN "
                               f"{ACTIVE} ORDER BY rollout_id DESC LIMIT 1")  # fmt: skip
            if active is not None:
                raise Conflict(
                    "rollout_active",
                    f"rollout {active[0]} of {active[1]} is still going: finish or abort it first",
                )
            for car_id in cars:
                self._get_car(car_id)
            row = self._one(
                f"INSERT INTO rollouts (version, status, stage, created_by, created_at, "
                f"updated_at) VALUES (?, 'running', ?, ?, ?, ?) RETURNING {ROLLOUT_COLS}",
                (version, "canary" if canaries else "rest", created_by, now, now),
            )
            rollout_id = int(row[0])
            for car_id in cars:
                self._execute(
                    "INSERT INTO rollout_cars (rollout_id, car_id, canary) VALUES (?, ?, ?)",
                    (rollout_id, car_id, car_id in canaries),
                )
            return self._rollout(rollout_id)

    def get_rollout(self, rollout_id: int) -> Rollout:
        with self._tx(write=False):
            return self._rollout(rollout_id)

    def list_rollouts(self, limit: int = 50) -> list[Rollout]:
        """The newest first, without their cars."""
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {ROLLOUT_COLS} FROM rollouts ORDER BY rollout_id DESC LIMIT ?", (limit,)
            )
        return [self._head(r) for r in rows]

    def active_rollout(self) -> Rollout | None:
        with self._tx(write=False):
            row = self._one(
                f"SELECT rollout_id FROM rollouts WHERE status IN {ACTIVE} "
                "ORDER BY rollout_id DESC LIMIT 1"
            )
            return None if row is None else self._rollout(int(row[0]))

    def act_on_rollout(self, rollout_id: int, action: str) -> Rollout:
        """`pause`, `resume` or `abort` (cars that installed already keep the version)."""
        if action not in ACTIONS:
            raise InvalidValue("action", f"expected one of {tuple(ACTIONS)}, got {action!r}")
        allowed, status = ACTIONS[action]
        with self._tx():
            head = self._rollout(rollout_id)
            if head.status not in allowed:
                raise Conflict(
                    "rollout_status",
                    f"rollout {rollout_id} is {head.status}: it cannot {action} "
                    f"(only a {' or '.join(allowed)} rollout can)",
                )
            reason = "aborted by the operator" if action == "abort" else head.reason
            self._set_status(rollout_id, status, reason)
            return self._rollout(rollout_id)

    def rollout_offers(self, reoffer_after: dt.timedelta) -> list[tuple[int, str, str]]:
        """(rollout, version, car) to offer now: the running rollout's cars of its stage that are
        online, not done with it, and not offered in the last `reoffer_after` (a car that
        restarted or lost its link forgets an offer; offering again is harmless)."""
        since = self._time(self._now() - reoffer_after)
        with self._tx(write=False):
            rows = self._all(
                "SELECT r.rollout_id, r.version, rc.car_id FROM rollouts r "
                "JOIN rollout_cars rc ON rc.rollout_id = r.rollout_id "
                "JOIN car_sync s ON s.car_id = rc.car_id "
                "WHERE r.status = 'running' AND (r.stage = 'rest' OR rc.canary = ?) "
                f"AND rc.step NOT IN {FINISHED} AND s.online = ? "
                "AND (rc.offered_at IS NULL OR rc.offered_at < ?) "
                "ORDER BY rc.canary DESC, rc.car_id",
                (True, True, since),
            )
        return [(int(r[0]), r[1], r[2]) for r in rows]

    def rollout_offered(self, rollout_id: int, car_id: str) -> None:
        with self._tx():
            self._execute(
                "UPDATE rollout_cars SET offered_at = ?, "
                "step = CASE WHEN step = 'pending' THEN 'offered' ELSE step END "
                "WHERE rollout_id = ? AND car_id = ?",
                (self._time(self._now()), rollout_id, car_id),
            )

    def record_update_step(self, car_id: str, version: str, step: str, reason: str) -> str:
        """A car's `update_step` event: its step in the newest rollout of `version` it is in;
        the rollout moves on if this step decides it. The outcome kept with the event."""
        if step not in UPDATE_STEPS:
            raise InvalidValue("data.step", f"expected one of {UPDATE_STEPS}, got {step!r}")
        with self._tx():
            row = self._one(
                "SELECT r.rollout_id, rc.step FROM rollouts r JOIN rollout_cars rc "
                "ON rc.rollout_id = r.rollout_id WHERE rc.car_id = ? AND r.version = ? "
                "ORDER BY r.rollout_id DESC LIMIT 1",
                (car_id, version),
            )
            if row is None:
                return f"kept: car {car_id} is in no rollout of {version}"
            rollout_id, before = int(row[0]), row[1]
            if before in FINISHED and step not in FINISHED:
                # a late step (sent before the restart, delivered after it) must not undo it
                return f"kept: car {car_id} finished rollout {rollout_id} already ({before})"
            self._execute(
                "UPDATE rollout_cars SET step = ?, reason = ?, step_at = ? "
                "WHERE rollout_id = ? AND car_id = ?",
                (step, reason[:1000], self._time(self._now()), rollout_id, car_id),
            )
            moved = self._move_on(self._rollout(rollout_id), car_id, step, reason)
            return f"applied: rollout {rollout_id} car {step}" + (f"; {moved}" if moved else "")

    # ---- moving on --------------------------------------------------------------------------

    def _move_on(self, rollout: Rollout, car_id: str, step: str, reason: str) -> str:
        """O-OTA-3: what this step decides of the rollout (a note, or "")."""
        if rollout.status != "running":
            return ""
        car = rollout.car(car_id)
        if rollout.stage == "canary" and car.canary and step in FAILED:
            why = f"canary {car_id} {step.replace('_', ' ')}" + (f": {reason}" if reason else "")
            self._set_status(rollout.rollout_id, "stopped", why)
            return f"rollout stopped ({why})"
        canaries = [c for c in rollout.cars if c.canary]
        if rollout.stage == "canary" and all(c.step == "healthy" for c in canaries):
            self._execute(
                "UPDATE rollouts SET stage = 'rest', updated_at = ? WHERE rollout_id = ?",
                (self._time(self._now()), rollout.rollout_id),
            )
            return "every canary healthy: on to the rest"
        if rollout.stage == "rest" and all(c.step in FINISHED for c in rollout.cars):
            failed = sum(c.step in FAILED for c in rollout.cars)
            self._set_status(
                rollout.rollout_id, "done", f"{failed} of {len(rollout.cars)} cars did not take it"
            )
            return "rollout done"
        return ""

    def _set_status(self, rollout_id: int, status: str, reason: str) -> None:
        self._execute(
            "UPDATE rollouts SET status = ?, reason = ?, updated_at = ? WHERE rollout_id = ?",
            (status, reason[:1000], self._time(self._now()), rollout_id),
        )

    # ---- rows -------------------------------------------------------------------------------

    def _rollout(self, rollout_id: int) -> Rollout:
        row = self._one(f"SELECT {ROLLOUT_COLS} FROM rollouts WHERE rollout_id = ?", (rollout_id,))
        if row is None:
            raise NotFound("rollout", str(rollout_id))
        cars = self._all(
            f"SELECT {CAR_COLS} FROM rollout_cars WHERE rollout_id = ? ORDER BY canary DESC, "
            "car_id",
            (rollout_id,),
        )
        head = self._head(row)
        return Rollout(**{**head.__dict__, "cars": tuple(self._car_row(c) for c in cars)})

    def _head(self, row: Any) -> Rollout:
        return Rollout(
            int(row[0]), row[1], row[2], row[3], row[4], row[5],
            self._read_time(row[6]), self._read_time(row[7]),
        )  # fmt: skip

    def _car_row(self, row: Any) -> RolloutCar:
        return RolloutCar(
            row[0], bool(row[1]), row[2], row[3], self._opt_time(row[4]), self._opt_time(row[5])
        )

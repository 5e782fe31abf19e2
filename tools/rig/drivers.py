"""The drivers of the parts every rig runs alike on this machine: the clock, the cloud as the
operator sees it, the car unit's power.

- `RigClock` (ClockProtocol): the cloud reads car time from a file (`kagi cloud serve --clock
  file:…`), the unit runs a manual clock set over its control socket; `advance` moves both.
- `CloudView` (CloudViewProtocol): `kagi cloud list` and the other `kagi cloud` commands on the
  rig's store, SQLite or PostgreSQL alike.
- `UnitPower` (PowerProtocol): the unit's process killed (SIGKILL: a power cut as far as it can
  tell) and started again on its folder.

The network (`tools.rig.relay.Relay`), the mailbox (`tools.rig.mailbox.Mailbox`) and the unit's
console (`tools.rig.unit_process.UnitProcess`) implement their protocols themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloud.cli import list_records
from cloud.clock import FileClock
from cloud.store import Store, open_store
from cloud.store.fleet import FLEET_KEY
from tools.rig.phone import JST
from tools.rig.processes import CloudProcess, run_kagi
from tools.rig.rigfile import RigError
from tools.rig.unit_process import UnitProcess


class RigClock:
    def __init__(self, path: Path, unit: UnitProcess, start: dt.datetime) -> None:
        self.path = path
        self.unit = unit
        self._t = start.timestamp()
        FileClock.write(path, self._t)

    @property
    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._t, JST)

    @property
    def timestamp(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise RigError("the rig's clock does not go back")
        self._t += seconds
        FileClock.write(self.path, self._t)
        self.sync()

    def sync(self) -> None:
        answer = self.unit.request({"op": "set_time", "t": self._t})
        if not answer.get("ok"):
            raise RigError(f"the unit refused the rig's time: {answer.get('error')}")


class CloudView:
    """The cloud of `process` on the store at `db` (a SQLite path or a postgresql:// URL)."""

    def __init__(
        self, process: CloudProcess, db: str, folder: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.process = process
        self.db = db
        self.folder = folder
        self.env = dict(env or {})
        self._store: Store | None = None

    @property
    def api_url(self) -> str:
        return self.process.url

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.db, migrate=False)
        return self._store

    @property
    def fleet_key(self) -> str:
        key = self.store.get_setting(FLEET_KEY)
        if key is None:
            raise RigError(f"{self.db}: the cloud has no fleet key")
        return key

    def list(self, what: str, **filters: str) -> list[dict[str, Any]]:
        """The records `kagi cloud list WHAT --json` prints, read by the same code."""
        return list_records(self.store, what, **filters)

    def kagi(self, *args: str) -> str:
        return run_kagi(["cloud", *args, "--db", self.db], self.folder, self.env)

    def log_tail(self) -> str:
        return self.process.log_tail()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class UnitPower:
    def __init__(self, unit: UnitProcess) -> None:
        self.unit = unit

    def cut(self) -> None:
        self.unit.kill()
        self.unit.drop_connection()

    def on(self) -> None:
        self.unit.start()

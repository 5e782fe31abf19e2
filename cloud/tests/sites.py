"""A real `kagi cloud serve` on the demo fleet, for the pages' browser tests.

The cloud runs as its own process (as an operator starts it), on SQLite in a test folder, with
an embedded broker on a free port and its clock in a file the test moves (`--clock file:`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tools.rig.processes import CloudProcess, free_port, run_kagi

# A Monday morning in the guide's time zone: the demo fleet's day.
START = dt.datetime(2027, 4, 5, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


class Site:
    def __init__(
        self, folder: Path, start: dt.datetime = START, extra: tuple[str, ...] = ()
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.db = str(folder / "kagi-cloud.db")
        self.clock_file = folder / "clock"
        self.set_time(start)
        self.kagi("demo")
        self.process = CloudProcess(
            folder,
            free_port(),
            [
                "--db", self.db,
                "--broker-port", str(free_port()),
                "--clock", f"file:{self.clock_file}",
                *extra,
            ],
        )  # fmt: skip
        self.process.start()

    @property
    def url(self) -> str:
        return self.process.url

    def kagi(self, *args: str, stdin: str | None = None) -> str:
        """`kagi cloud ARGS --db DB` in the site's folder; what it printed."""
        return run_kagi(["cloud", *args, "--db", self.db], self.folder, stdin=stdin)

    def initial_password(self, account_id: str, password: str) -> None:
        """What the operator's welcome mail carries: a password to replace at the first login."""
        self.kagi(
            "set-password", account_id, "--initial", "--password-stdin", stdin=password + "\n"
        )

    def password(self, account_id: str, password: str) -> None:
        self.kagi("set-password", account_id, "--password-stdin", stdin=password + "\n")

    def set_time(self, at: dt.datetime) -> None:
        self.clock_file.write_text(f"{at.timestamp():.3f}\n")

    def stop(self) -> None:
        self.process.stop()

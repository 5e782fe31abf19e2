"""What the firmware's process tests need around `tools.rig.unit_process.UnitProcess`: a unit
config on the sim adapters (`write_config`), and `read_database`, what the unit left on disk,
read-only, straight from SQLite (a test looking past the firmware at what it saved).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tools.rig.processes import kagi_command
from tools.rig.unit_process import UnitDied
from tools.rig.unit_process import UnitProcess as _UnitProcess

__all__ = ["CARD_KEY", "CLOCK_START", "UnitDied", "UnitProcess", "kagi_command", "write_config"]

CARD_KEY = "00112233445566778899aabbccddeeff"
# Where the manual clock of a test unit starts: before every fixed instant the tests set it to
# (firmware.tests.harness.START and the like), whatever today's date is.
CLOCK_START = 1_767_193_200.0  # 2026-01-01 00:00 JST


def write_config(
    folder: Path, car_id: str = "car-crash", extra: str = "", clock_start: float = CLOCK_START
) -> Path:
    """A unit config in `folder`: sim adapters, no cloud, the manual clock starting at
    `clock_start`, a control socket."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "unit.toml"
    path.write_text(
        "[unit]\n"
        f'car_id = "{car_id}"\n'
        f'card_key = "{CARD_KEY}"\n'
        'database = "unit.db"\n'
        'reader = "sim:"\n'
        'board = "sim:"\n'
        'cloud = "none:"\n'
        'clock = "manual"\n'
        f"clock_start = {clock_start}\n"
        'control = "control.sock"\n' + extra,
        encoding="utf-8",
    )
    return path


class UnitProcess(_UnitProcess):
    """A unit process whose folder gets the sim config of `write_config` if it has none."""

    def __init__(self, folder: Path) -> None:
        if not (folder / "unit.toml").exists():
            write_config(folder)
        super().__init__(folder)


def read_database(path: Path) -> dict[str, Any]:
    """Everything the unit keeps, read-only and straight from SQLite (WAL included)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT snapshot FROM trip_state WHERE id = 1").fetchone()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        outbox = [
            {"seq": seq, "id": eid, "type": kind, "at": at, "data": json.loads(data)}
            for seq, eid, kind, at, data in db.execute(
                "SELECT seq, id, type, at, data FROM outbox ORDER BY seq"
            )
        ]
        cards: dict[str, list[str]] = {}
        for card, driver in db.execute("SELECT card_hash, driver_id FROM cards"):
            cards.setdefault(driver, []).append(card)
        drivers = [
            {"id": d, "licence_expiry": exp, "cards": sorted(cards.get(d, []))}
            for d, exp in db.execute("SELECT id, licence_expiry FROM drivers ORDER BY id")
        ]
        reservations = [
            {"id": r, "driver_id": d, "start": s, "end": e}
            for r, d, s, e in db.execute(
                'SELECT id, driver_id, start, "end" FROM reservations ORDER BY start, id'
            )
        ]
        commands = dict(db.execute("SELECT id, result_seq FROM commands").fetchall())
    finally:
        db.close()
    return {
        "snapshot": json.loads(row[0]) if row else None,
        "next_seq": int(meta["next_seq"]),
        "bookings": {
            "version": int(meta["bookings_version"]),
            "reservations": reservations,
            "drivers": drivers,
        },
        "outbox": outbox,
        "commands": commands,
    }

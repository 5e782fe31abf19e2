"""The cloud's schema as numbered migrations: `m0001_initial.py`, `m0002_<what>.py`, …

Each module is one step, written once per backend (`SQLITE`, `POSTGRESQL`), its docstring's
first line naming it. The store applies the pending steps in order, each in one transaction with
its `schema_version` row, so a step is applied whole or not at all, and applying twice is a
no-op. A database whose version is higher than the last step here is refused, never touched.

Never edit a released step; add the next one.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

_NAME = re.compile(r"m(\d{4})_(\w+)")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: str
    postgresql: str


def _discover() -> tuple[Migration, ...]:
    found: list[Migration] = []
    for info in pkgutil.iter_modules(__path__):
        match = _NAME.fullmatch(info.name)
        if not match:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        doc = (module.__doc__ or match.group(2)).strip().splitlines()[0]
        found.append(Migration(int(match.group(1)), doc, module.SQLITE, module.POSTGRESQL))
    found.sort(key=lambda m: m.version)
    for expected, m in enumerate(found, start=1):
        if m.version != expected:  # a gap or a duplicate is a packaging mistake
            raise RuntimeError(f"cloud.migrations: expected step {expected}, found {m.version}")
    return tuple(found)


MIGRATIONS = _discover()
LATEST = MIGRATIONS[-1].version if MIGRATIONS else 0

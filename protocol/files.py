"""A file written whole or not at all, and on the disk before the call returns: the car's install
slots and fleet configuration, the cloud's update repository."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(
    path: Path, data: bytes, before_rename: Callable[[], None] = lambda: None
) -> None:
    """`data` in `path` (its folder made if need be): a temporary file, synced, renamed over it,
    and the folder synced. `before_rename` runs once the copy is on the disk (a test's kill
    point)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    before_rename()
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

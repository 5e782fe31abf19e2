"""A stand-in for kagi's wheel in the update tests (`python -m kagi_probe` says its version, then
confirms, crashes or hangs)."""

from __future__ import annotations

import zipfile
from pathlib import Path

PROBE = """
import os, sys, time
VERSION = {version!r}
print(VERSION, flush=True)
open(os.environ["PROBE_OUT"], "a").write(VERSION + "\\n")
if {behaviour!r} == "healthy":
    from firmware.launcher import confirm_from_env
    confirm_from_env()
elif {behaviour!r} == "crash":
    sys.exit(3)
elif {behaviour!r} == "hang":
    time.sleep(60)
"""
FILES = 20  # modules in each test wheel: kill points while unpacking


def wheel(tmp: Path, version: str, behaviour: str = "healthy") -> Path:
    """A unit's wheel, standing in for kagi's: `python -m kagi_probe` says its version, then
    confirms, crashes or hangs."""
    path = tmp / f"kagi_probe-{version}-{behaviour}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("kagi_probe/__init__.py", "")
        z.writestr("kagi_probe/__main__.py", PROBE.format(version=version, behaviour=behaviour))
        for i in range(FILES):
            z.writestr(f"kagi_probe/part{i:02}.py", f"N = {i}  # {version}\n")
    return path

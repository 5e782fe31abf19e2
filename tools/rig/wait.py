"""Waiting on the car without sleeping a fixed time: poll a condition, fail naming what."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

WAIT = 10.0  # seconds a step may take before the rig calls it broken


def wait_for(
    check: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.02
) -> Any:
    """Poll `check` every `interval` seconds until it returns something true; its value, or
    AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)

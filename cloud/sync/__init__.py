"""The cloud's side of the car sync over MQTT (SPEC §3): signed snapshots out on every change
that concerns a car, signed commands out and their one result back, every car event in,
applied once, and the last state of every car. See docs/sync.md.

    from cloud.sync import CloudSync, SyncConfig
    with CloudSync(store, policy, SyncConfig("mqtt://127.0.0.1:1883", password=...)) as sync:
        serve(store, policy, host, port, cars=sync)

(The names load on first use, so `kagi` commands that do not sync do not pay for paho.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloud.sync.snapshots import SIGNING_KEY, Window, public_key, signing_key
    from cloud.sync.worker import CloudSync, SyncConfig, SyncStats

__all__ = [
    "SIGNING_KEY",
    "CloudSync",
    "SyncConfig",
    "SyncStats",
    "Window",
    "public_key",
    "signing_key",
]
_WHERE = {
    "SIGNING_KEY": "snapshots",
    "Window": "snapshots",
    "public_key": "snapshots",
    "signing_key": "snapshots",
    "CloudSync": "worker",
    "SyncConfig": "worker",
    "SyncStats": "worker",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cloud.sync' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cloud.sync.{_WHERE[name]}"), name)

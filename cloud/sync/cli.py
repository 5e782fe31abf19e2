"""`kagi cloud public-key`: the cloud's Ed25519 public key, for provisioning car units (a car
accepts only snapshots and commands signed with the matching private key, SPEC X-SEC-1). The key
pair is made the first time it is asked for and kept in the database."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_commands(command: Callable[[str, Callable[[argparse.Namespace], int], str], Any]) -> None:
    """Register the sync's commands with `kagi cloud`'s `command(name, func, help)`."""
    command(
        "public-key",
        _public_key,
        "print the cloud's signing public key (hex) to provision car units with",
    )


def _public_key(args: argparse.Namespace) -> int:
    from cloud.store import open_store
    from cloud.sync.snapshots import public_key

    with open_store(args.db, migrate=False) as store:
        print(public_key(store))
    return 0

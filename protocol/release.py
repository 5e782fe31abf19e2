"""What a release is, as the release tool, the cloud's update repository and the car agree on
(SPEC O-OTA-1, O-OTA-2).

A release is a set of TUF targets under `releases/<version>/`: the car unit's wheel
(`unit/<wheel>`), each board's firmware files (`boards/<board>/<file>`) and `release.json`,
the list of them. Every target carries
the release's version in its TUF `custom` field, so what the car checks (never older than what it
runs) is signed by the offline targets key with the file's hash and length.

A fleet configuration (O-OTA-4) is one target, `config/<N>.json` (N = 1, 2, …): the trip
tables every car applies between trips (`FLEET_TABLES`), signed by the same offline key.

TUF roles and kagi's keys: `root` and `targets` are the operator's offline release keys (a
release can only be made with them); `snapshot` and `timestamp` are the cloud's online key,
which serves and refreshes releases but cannot make one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner

ROLES_OFFLINE = ("root", "targets")
ROLES_ONLINE = ("snapshot", "timestamp")
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# The tables of a car's configuration the fleet configuration sets (the station, the time zone
# and the unit's own settings stay the car's)
FLEET_TABLES = ("timing", "end_checks", "feedback", "cards")


def load_signer(path: Path) -> CryptoSigner:
    """The signer of a private key file (PEM, as `kagi release keys` writes them)."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise ReleaseError(f"{path} is not a private key: {exc}") from exc
    return CryptoSigner(key)


class ReleaseError(ValueError):
    """A release that is not well formed, naming what is wrong."""


def parse_version(text: str) -> tuple[int, int, int]:
    """`1.2.3` as (1, 2, 3); ReleaseError naming the text otherwise."""
    m = VERSION.match(text)
    if not m:
        raise ReleaseError(f"version {text!r} is not MAJOR.MINOR.PATCH")
    return int(m[1]), int(m[2]), int(m[3])


def prefix(version: str) -> str:
    parse_version(version)
    return f"releases/{version}/"


def index_path(version: str) -> str:
    """The release's own signed list of its files."""
    return f"{prefix(version)}release.json"


def unit_path(version: str, wheel: str) -> str:
    return f"{prefix(version)}unit/{wheel}"


def board_path(version: str, board: str, name: str) -> str:
    return f"{prefix(version)}boards/{board}/{name}"


def config_path(version: int) -> str:
    """The fleet configuration `version` (1, 2, …) as a target."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ReleaseError(f"configuration version {version!r} is not a whole number from 1")
    return f"config/{version}.json"


@dataclass(frozen=True)
class ReleaseFile:
    """One target of a release: where it goes (the unit, or a board and its file name)."""

    path: str
    version: str
    kind: str  # "unit", "board", "index", or "config" (a fleet configuration)
    board: str | None
    name: str
    length: int

    def custom(self) -> dict[str, Any]:
        return {"kagi": {"version": self.version, "kind": self.kind, "board": self.board}}


def describe(path: str, length: int, custom: dict[str, Any]) -> ReleaseFile:
    """The release file a signed target names; ReleaseError if the target is not one."""
    kagi = custom.get("kagi")
    if not isinstance(kagi, dict):
        raise ReleaseError(f"target {path!r} is not part of a kagi release")
    version = str(kagi.get("version", ""))
    if kagi.get("kind") == "config":
        if not version.isdigit() or path != config_path(int(version)):
            raise ReleaseError(f"target {path!r} is not configuration {version}")
        return ReleaseFile(path, version, "config", None, path.split("/")[-1], length)
    parts = path.removeprefix(prefix(version)).split("/")
    if not path.startswith(prefix(version)):
        raise ReleaseError(f"target {path!r} is not under releases/{version}/")
    if kagi.get("kind") == "index" and parts == ["release.json"]:
        return ReleaseFile(path, version, "index", None, parts[0], length)
    if kagi.get("kind") == "unit" and len(parts) == 2 and parts[0] == "unit":
        return ReleaseFile(path, version, "unit", None, parts[1], length)
    if kagi.get("kind") == "board" and len(parts) == 3 and parts[0] == "boards":
        return ReleaseFile(path, version, "board", parts[1], parts[2], length)
    raise ReleaseError(f"target {path!r} is neither the unit's wheel nor a board's file")

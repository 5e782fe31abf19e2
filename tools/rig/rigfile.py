"""Rig files: what a rig is made of and what it can do (`tools/rig/rigs/NAME.toml`).

    [rig]
    kind = "sim"                 # sim: every part a process on this machine; real: a bench
    description = "…"
    features = ["board", "reader", "card", "cloud", "mail", "network", "power_cut", "clock"]
    board = "pico"               # further keys are the kind's own settings (its drivers check them)

A scenario names the features it needs (`@pytest.mark.needs("power_cut")`); on a rig without one
it is skipped with the rig's reason (`RigFile.lacks`). A bad file is refused naming the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RIGS = Path(__file__).resolve().parent / "rigs"
KINDS = ("sim", "real")
FEATURES = ("board", "reader", "card", "cloud", "mail", "network", "power_cut", "clock")


class RigError(Exception):
    """A rig file or a rig part that is wrong; the message says what and where."""


@dataclass(frozen=True)
class RigFile:
    name: str
    kind: str
    description: str
    features: frozenset[str]
    settings: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def lacks(self, feature: str) -> str | None:
        """Why a test needing `feature` cannot run on this rig (None: it can)."""
        if feature not in FEATURES:
            raise RigError(f"no rig feature {feature!r}; known: {', '.join(FEATURES)}")
        if feature in self.features:
            return None
        return f"rig {self.name!r} ({self.description}) has no {feature!r}"

    def setting(self, key: str, default: Any, choices: tuple[Any, ...] | None = None) -> Any:
        """One of the kind's own settings (`rig.KEY`), checked against `choices`."""
        value = self.settings.get(key, default)
        if choices is not None and value not in choices:
            raise RigError(f"{self.where}: rig.{key}: expected one of {choices}, got {value!r}")
        if choices is None and not isinstance(value, type(default)):
            raise RigError(
                f"{self.where}: rig.{key}: expected a {type(default).__name__}, got {value!r}"
            )
        return value

    @property
    def where(self) -> str:
        return str(self.path or self.name)


def known_rigs() -> list[str]:
    return sorted(p.stem for p in RIGS.glob("*.toml") if not p.stem.endswith(".example"))


def load_rig(name_or_path: str) -> RigFile:
    """`sim`, another name under tools/rig/rigs/, or a path to a rig file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = RIGS / f"{name_or_path}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RigError(f"no rig file {path} (rigs here: {', '.join(known_rigs())})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RigError(f"{path}: {exc}") from None
    rig = data.get("rig")
    if not isinstance(rig, dict):
        raise RigError(f"{path}: expected a [rig] table")
    kind = rig.get("kind")
    if kind not in KINDS:
        raise RigError(f"{path}: rig.kind: expected one of {KINDS}, got {kind!r}")
    features = rig.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise RigError(f"{path}: rig.features: expected a list of names")
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise RigError(f"{path}: rig.features: unknown {unknown}; known: {', '.join(FEATURES)}")
    settings = {k: v for k, v in rig.items() if k not in ("kind", "description", "features")}
    description = str(rig.get("description", ""))
    return RigFile(path.stem, kind, description, frozenset(features), settings, path)

"""The operator's offline side of a release (SPEC O-OTA-1): make the release keys, and sign what
a release contains as TUF metadata (python-tuf's Metadata API).

`keys()` makes the offline root and targets keys and the cloud's online key (snapshot and
timestamp), and the first `root.json`, which every car is provisioned with. `sign()` adds a
release's files (the unit's wheel, the boards' firmware files) to the targets metadata, signed
with the offline targets key, and `sign_config()` a fleet configuration (O-OTA-4); the cloud
publishes it (`cloud.update_repo`) with its online key, which can refresh and serve releases
but never make one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from protocol import release as rel

ROOT_DAYS = 365
TARGETS_DAYS = 90
KEY_FILES = {"root": "root.key", "targets": "targets.key", "online": "online.key"}
PRETTY = JSONSerializer(compact=False)


def keys(folder: Path, now: dt.datetime | None = None) -> Path:
    """Make the offline keys (root, targets), the cloud's online key and the first root
    metadata in `folder`; the path of `root.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, file in KEY_FILES.items():
        path = folder / file
        if path.exists():
            raise rel.ReleaseError(f"{path} exists: keys are made once")
        made[name] = CryptoSigner.generate_ed25519()
        path.write_bytes(made[name].private_bytes)
        path.chmod(0o600)
    now = now or dt.datetime.now(dt.UTC)
    root = Metadata(Root(expires=now + dt.timedelta(days=ROOT_DAYS), consistent_snapshot=False))
    for role, name in (("root", "root"), ("targets", "targets"),
                       ("snapshot", "online"), ("timestamp", "online")):  # fmt: skip
        root.signed.add_key(made[name].public_key, role)
    root.sign(made["root"])
    out = folder / "root.json"
    root.to_file(str(out), PRETTY)
    return out


@dataclass(frozen=True)
class Part:
    """One file of a release to be: where it goes and its bytes."""

    kind: str  # "unit" or "board"
    board: str | None
    name: str
    data: bytes


def parts(wheel: Path, boards: dict[str, dict[str, bytes]]) -> list[Part]:
    """A release's parts: the unit's wheel and each board's files (name on the board: bytes,
    as `tools.flash.firmware()` gives them)."""
    if not wheel.name.endswith(".whl"):
        raise rel.ReleaseError(f"{wheel} is not a wheel")
    out = [Part("unit", None, wheel.name, wheel.read_bytes())]
    for board, files in sorted(boards.items()):
        if not files:
            raise rel.ReleaseError(f"board {board!r}: no files")
        out += [Part("board", board, name, data) for name, data in sorted(files.items())]
    return out


def sign(
    keys_folder: Path,
    version: str,
    release: list[Part],
    current: bytes | None,
    now: dt.datetime | None = None,
) -> tuple[bytes, dict[str, bytes]]:
    """The next targets metadata (after `current`, the published one, if any) with `release`
    added as `version`, signed with the offline targets key; and the files by target path."""
    rel.parse_version(version)
    now = now or dt.datetime.now(dt.UTC)
    targets = _next(current, now)
    if any(p.startswith(rel.prefix(version)) for p in targets.signed.targets):
        raise rel.ReleaseError(f"release {version} is already published")
    files: dict[str, bytes] = {}
    index = Part("index", None, "release.json", b"")
    for part in [*release, index]:
        if part.kind == "index":
            path = rel.index_path(version)
            part = Part(
                "index",
                None,
                part.name,
                json.dumps({"version": version, "files": sorted(files)}).encode(),
            )
        elif part.kind == "unit":
            path = rel.unit_path(version, part.name)
        else:
            path = rel.board_path(version, str(part.board), part.name)
        described = rel.ReleaseFile(path, version, part.kind, part.board, part.name, 0)
        target = TargetFile.from_data(path, part.data, ["sha256"])
        target.unrecognized_fields["custom"] = described.custom()
        targets.signed.targets[path] = target
        files[path] = part.data
    return _signed(targets, keys_folder, now), files


def sign_config(
    keys_folder: Path,
    version: int,
    body: bytes,
    current: bytes | None,
    now: dt.datetime | None = None,
) -> tuple[bytes, dict[str, bytes]]:
    """The next targets metadata with fleet configuration `version` (its JSON `body`) added,
    signed with the offline targets key (O-OTA-4); and its file by target path."""
    path = rel.config_path(version)
    now = now or dt.datetime.now(dt.UTC)
    targets = _next(current, now)
    if path in targets.signed.targets:
        raise rel.ReleaseError(f"configuration {version} is already published")
    newest = max((int(rel.describe(p, t.length, t.custom).version)
                  for p, t in targets.signed.targets.items() if p.startswith("config/")),
                 default=0)  # fmt: skip
    if version <= newest:
        raise rel.ReleaseError(f"configuration {version} is not newer than the published {newest}")
    target = TargetFile.from_data(path, body, ["sha256"])
    target.unrecognized_fields["custom"] = rel.ReleaseFile(
        path, str(version), "config", None, path.split("/")[-1], 0
    ).custom()
    targets.signed.targets[path] = target
    return _signed(targets, keys_folder, now), {path: body}


def _next(current: bytes | None, now: dt.datetime) -> Metadata[Targets]:
    """The targets metadata after `current` (the published one; None: the first)."""
    if current is None:
        return Metadata(Targets(expires=now))
    targets = Metadata[Targets].from_bytes(current)
    targets.signed.version += 1
    return targets


def _signed(targets: Metadata[Targets], keys_folder: Path, now: dt.datetime) -> bytes:
    targets.signed.expires = now + dt.timedelta(days=TARGETS_DAYS)
    targets.signatures.clear()
    targets.sign(rel.load_signer(keys_folder / KEY_FILES["targets"]))
    return targets.to_bytes(PRETTY)

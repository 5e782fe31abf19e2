"""The cloud's TUF repository of releases (SPEC O-OTA-1): it publishes what the offline keys
signed and serves it to the cars, holding only the online key (snapshot and timestamp).

`publish()` takes a release's targets metadata and files, and refuses them unless the root's
targets key signed them, the version is newer than what is published and every file has the
signed hash and length; then it writes a new snapshot and timestamp. `refresh()` re-signs the
timestamp (and the snapshot) before they expire, so that a car can tell a live repository from
a frozen one. Laid out as TUF clients read it: `metadata/<n>.root.json`, `metadata/<role>.json`,
`targets/<path>`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from protocol import release as rel
from protocol.files import write_atomically

TIMESTAMP_LIFE = dt.timedelta(days=1)
SNAPSHOT_LIFE = dt.timedelta(days=7)
RENEW_BEFORE = 0.5  # re-sign once half the life has passed
PRETTY = JSONSerializer(compact=False)
ONLINE_KEY = "online.key"  # in the repository's folder: the one key the cloud holds


class PublishRefused(rel.ReleaseError):
    """A release the repository will not publish, naming why."""


class UpdateRepo:
    """The releases a cloud serves, in `folder`; `online` signs snapshot and timestamp."""

    def __init__(
        self,
        folder: Path,
        online: Signer,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.folder, self.online, self.clock = folder, online, clock
        self.metadata, self.targets_dir = folder / "metadata", folder / "targets"
        self._lock = threading.Lock()

    # ---- setting up ------------------------------------------------------------------------

    def init(self, root_json: bytes) -> None:
        """Start from the operator's root metadata (the one the cars are provisioned with)."""
        root = Metadata[Root].from_bytes(root_json)
        root.verify_delegate("root", root)
        keyids = {k for r in rel.ROLES_ONLINE for k in root.signed.roles[r].keyids}
        if self.online.public_key.keyid not in keyids:
            raise PublishRefused("the online key is not the root's snapshot and timestamp key")
        with self._lock:
            write_atomically(self.metadata / f"{root.signed.version}.root.json", root_json)
            write_atomically(self.metadata / "root.json", root_json)

    def root(self) -> Metadata[Root]:
        return Metadata[Root].from_file(str(self.metadata / "root.json"))

    def current_targets(self) -> bytes | None:
        path = self.metadata / "targets.json"
        return path.read_bytes() if path.exists() else None

    # ---- publishing ------------------------------------------------------------------------

    def publish(self, targets_json: bytes, files: dict[str, bytes]) -> list[str]:
        """Publish a signed targets metadata and its new files; the versions it now holds."""
        try:
            targets = Metadata[Targets].from_bytes(targets_json)
        except DeserializationError as exc:
            raise PublishRefused(f"the targets metadata does not parse: {exc}") from exc
        try:
            self.root().verify_delegate("targets", targets)
        except UnsignedMetadataError as exc:
            raise PublishRefused(
                "the targets metadata is not signed by the release (targets) key"
            ) from exc
        with self._lock:
            current = self.current_targets()
            old = Metadata[Targets].from_bytes(current).signed if current else None
            if old is not None and targets.signed.version <= old.version:
                raise PublishRefused(
                    f"targets version {targets.signed.version} is not newer than the "
                    f"published {old.version}"
                )
            for path, target in targets.signed.targets.items():
                rel.describe(path, target.length, target.custom)
                data = files.get(path)
                if data is None:
                    if old is not None and path in old.targets and old.targets[path] == target:
                        continue  # published before
                    raise PublishRefused(f"file {path} is missing")
                try:
                    target.verify_length_and_hashes(data)
                except Exception as exc:
                    raise PublishRefused(f"file {path} is not what was signed: {exc}") from exc
            for path, data in files.items():
                if path not in targets.signed.targets:
                    raise PublishRefused(f"file {path} is not in the signed targets")
                write_atomically(self.targets_dir / path, data)
            write_atomically(self.metadata / "targets.json", targets_json)
            self._sign_online(targets.signed.version, snapshot=True)
        return self.versions()

    def versions(self) -> list[str]:
        """The releases published, oldest first."""
        found = {f.version for f in self._files() if f.kind != "config"}
        return sorted(found, key=rel.parse_version)

    def config_versions(self) -> list[int]:
        """The fleet configurations published (O-OTA-4), oldest first."""
        return sorted(int(f.version) for f in self._files() if f.kind == "config")

    def _files(self) -> list[rel.ReleaseFile]:
        current = self.current_targets()
        if current is None:
            return []
        targets = Metadata[Targets].from_bytes(current).signed
        return [rel.describe(p, t.length, t.custom) for p, t in targets.targets.items()]

    # ---- keeping it live -------------------------------------------------------------------

    def refresh(self) -> bool:
        """Re-sign the timestamp (and the snapshot) past half their life; whether it did."""
        with self._lock:
            path = self.metadata / "timestamp.json"
            if not path.exists():
                return False
            stamp = Metadata[Timestamp].from_file(str(path)).signed
            now = self.clock()
            if stamp.expires - now > TIMESTAMP_LIFE * RENEW_BEFORE:
                return False
            snap = Metadata[Snapshot].from_file(str(self.metadata / "snapshot.json")).signed
            targets_version = snap.meta["targets.json"].version
            renew = snap.expires - now <= SNAPSHOT_LIFE * RENEW_BEFORE
            self._sign_online(targets_version, snapshot=renew)
            return True

    def _sign_online(self, targets_version: int, snapshot: bool) -> None:
        now = self.clock()
        snap_path, stamp_path = self.metadata / "snapshot.json", self.metadata / "timestamp.json"
        if snapshot or not snap_path.exists():
            prev = (
                Metadata[Snapshot].from_file(str(snap_path)).signed if snap_path.exists() else None
            )
            snap = Metadata(Snapshot(version=prev.version + 1 if prev else 1,
                                     expires=now + SNAPSHOT_LIFE))  # fmt: skip
            snap.signed.meta["targets.json"] = MetaFile(version=targets_version)
            snap.sign(self.online)
            write_atomically(snap_path, snap.to_bytes(PRETTY))
        snap_version = Metadata[Snapshot].from_file(str(snap_path)).signed.version
        prev_stamp = (
            Metadata[Timestamp].from_file(str(stamp_path)).signed if stamp_path.exists() else None
        )
        stamp = Metadata(Timestamp(version=prev_stamp.version + 1 if prev_stamp else 1,
                                   expires=now + TIMESTAMP_LIFE))  # fmt: skip
        stamp.signed.snapshot_meta = MetaFile(version=snap_version)
        stamp.sign(self.online)
        write_atomically(stamp_path, stamp.to_bytes(PRETTY))

    # ---- serving ---------------------------------------------------------------------------

    def file(self, kind: str, name: str) -> Path | None:
        """The file a car asks for (`metadata` or `targets`), never outside the repository."""
        base = (self.metadata if kind == "metadata" else self.targets_dir).resolve()
        path = (base / name).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return None
        return path


class Refresher:
    """Keeps a repository's timestamp fresh on a background thread while the cloud serves."""

    def __init__(self, repo: UpdateRepo, every: float = 600.0) -> None:
        self.repo, self.every = repo, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="update-refresh", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.repo.refresh()
            except OSError as exc:  # a full disk: try again, say so
                print(f"kagi cloud: the update repository was not refreshed: {exc}", flush=True)
            self._stop.wait(self.every)

    def __enter__(self) -> Refresher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

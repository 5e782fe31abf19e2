"""Releases for the update scenarios (SPEC O-OTA-1): this checkout's wheel under the versions a
scenario needs, signed and published as an operator does (`kagi release keys|sign`, `kagi cloud
updates-init|publish-release`).

`restamp()` makes kagi's wheel of another version from the one built: the dist-info folder and
METADATA carry the new version and RECORD is written again, so it is a wheel like one built
from a checkout with that version. `broken` files replace modules in it, for a release whose
new version fails (its start-up check never passes)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

from tools.rig.processes import run_kagi

# A start-up check that never passes: the release's new version is rolled back at its deadline.
NEVER_HEALTHY = {
    "firmware/startup_check.py": (
        b'"""A start-up check that never passes (a broken release, for the tests)."""\n'
        b"import threading\n\n\n"
        b"def confirm_when_healthy(unit, stop: threading.Event, poll: float = 0.25) -> bool:\n"
        b"    stop.wait()\n"
        b"    return False\n"
    )
}


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def restamp(
    wheel: Path, version: str, into: Path, replace: Mapping[str, bytes] | None = None
) -> Path:
    """kagi's `wheel` as version `version` in `into` (its modules replaced by `replace`)."""
    name, old = wheel.name.split("-")[:2]
    old_info, new_info = f"{name}-{old}.dist-info/", f"{name}-{version}.dist-info/"
    out = into / wheel.name.replace(f"-{old}-", f"-{version}-", 1)
    into.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            data = z.read(member)
            path = new_info + member[len(old_info) :] if member.startswith(old_info) else member
            if path == new_info + "METADATA":
                data = data.replace(
                    f"\nVersion: {old}\n".encode(), f"\nVersion: {version}\n".encode()
                )
            files[path] = data
    for path, data in (replace or {}).items():
        files[path] = data
    record = new_info + "RECORD"
    files[record] = (
        "".join(f"{p},{_digest(d)},{len(d)}\n" for p, d in files.items() if p != record).encode()
        + f"{record},,\n".encode()
    )
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return out


class ReleaseKit:
    """The operator's keys and the cloud's update repository in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.keys, self.repo = folder / "keys", folder / "updates"
        self.root_json = self.keys / "root.json"

    def make(self) -> ReleaseKit:
        self.folder.mkdir(parents=True, exist_ok=True)
        run_kagi(("release", "keys", str(self.keys)), self.folder)
        run_kagi(("cloud", "updates-init", "--repo", str(self.repo), "--root", str(self.root_json),
                  "--online-key", str(self.keys / "online.key")), self.folder)  # fmt: skip
        return self

    def publish(self, wheel: Path, version: str, boards: tuple[str, ...] = ("pico",)) -> None:
        """Sign `wheel` as release `version` with the offline keys; the cloud publishes it."""
        out = self.folder / f"release-{version}"
        shutil.rmtree(out, ignore_errors=True)
        board_args = [a for b in boards for a in ("--board", b)]
        run_kagi(("release", "sign", "--keys", str(self.keys), "--wheel", str(wheel),
                  "--version", version, *self._after(), "--out", str(out), *board_args),
                 self.folder)  # fmt: skip
        run_kagi(("cloud", "publish-release", "--repo", str(self.repo), str(out)), self.folder)

    def publish_config(self, version: int, toml: str) -> None:
        """Sign fleet configuration `version` (the tables in `toml`); the cloud publishes it."""
        out, source = self.folder / f"config-{version}", self.folder / f"fleet-{version}.toml"
        shutil.rmtree(out, ignore_errors=True)
        source.write_text(toml, encoding="utf-8")
        run_kagi(("release", "sign-config", "--keys", str(self.keys), "--version", str(version),
                  "--file", str(source), *self._after(), "--out", str(out)),
                 self.folder)  # fmt: skip
        run_kagi(("cloud", "publish-release", "--repo", str(self.repo), str(out)), self.folder)

    def _after(self) -> list[str]:
        current = self.repo / "metadata" / "targets.json"  # what the cloud serves now, if any
        return ["--current", str(current)] if current.exists() else []

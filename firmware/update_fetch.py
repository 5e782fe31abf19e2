"""The car's verified download of a release (SPEC O-OTA-2), with python-tuf's client.

`fetch_release()` refreshes the TUF metadata from the cloud (starting from the root the unit was
provisioned with), finds the release's files, refuses a version older than what the unit runs,
and downloads each file into the staging folder, where tuf checks its length and hash against
what the offline targets key signed. Nothing is replaced here: a refused release leaves only a
reason. A cut download resumes: `ResumingFetcher` keeps what arrived and asks for the rest with
an HTTP Range; tuf still checks the whole file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from protocol import release as rel

CHUNK = 64 * 1024  # what is held in memory at a time, however large the file


class UpdateRefused(Exception):
    """A release the car will not take; `reason` is the short word it reports."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class ResumingFetcher(FetcherInterface):
    """tuf's fetcher over HTTP that keeps each target's bytes in `partial/` as they arrive, and
    on the next attempt sends what it holds first and asks the server only for the rest."""

    def __init__(self, partial: Path, timeout: float = 10.0) -> None:
        self.partial = partial
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout))
        self.resumed_from: dict[str, int] = {}  # url -> bytes already held when asked
        self.received: dict[str, int] = {}  # url -> bytes that came over the network

    def _keep(self, url: str) -> Path:
        return self.partial / hashlib.sha256(url.encode()).hexdigest()

    def _fetch(self, url: str) -> Iterator[bytes]:
        if "/targets/" not in url:  # metadata: small, fetched whole
            reply = self.http.request("GET", url, preload_content=False)
            if reply.status != 200:
                raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {reply.status}", reply.status)
            return iter(reply.stream(CHUNK))
        return self._resume(url)

    def _resume(self, url: str) -> Iterator[bytes]:
        self.partial.mkdir(parents=True, exist_ok=True)
        keep = self._keep(url)
        held = keep.stat().st_size if keep.exists() else 0
        self.resumed_from[url] = held
        headers = {"range": f"bytes={held}-"} if held else {}
        reply = self.http.request("GET", url, headers=headers, preload_content=False)
        if reply.status == 416 and held:  # nothing left to send: what is held is the file
            reply.release_conn()
            return self._chunks(url, keep, held, None)
        if reply.status not in (200, 206):
            raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {reply.status}", reply.status)
        if reply.status == 200 and held:  # the server sent it all again
            held = 0
            keep.unlink()
        return self._chunks(url, keep, held, reply)

    def _chunks(
        self, url: str, keep: Path, held: int, reply: urllib3.BaseHTTPResponse | None
    ) -> Iterator[bytes]:
        if held:
            with open(keep, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        if reply is None:
            return
        with open(keep, "ab") as out:
            try:
                for chunk in reply.stream(CHUNK):
                    out.write(chunk)
                    out.flush()
                    self.received[url] = self.received.get(url, 0) + len(chunk)
                    yield chunk
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # cut: what came is kept
                raise tuf_errors.DownloadError(f"{url}: cut after {out.tell()} bytes") from exc

    def forget(self) -> None:
        """Drop every partial file (after a release is staged, or refused)."""
        if self.partial.exists():
            for p in self.partial.iterdir():
                p.unlink()


@dataclass(frozen=True)
class StagedRelease:
    """A release verified and downloaded into `folder`: its version and files by target path."""

    version: str
    files: dict[str, Path]
    described: dict[str, rel.ReleaseFile]
    fetched: int = 0  # bytes that came over the network for it (metadata and files)

    def unit_wheel(self) -> Path:
        return next(self.files[p] for p, d in self.described.items() if d.kind == "unit")

    def board_files(self, board: str) -> dict[str, Path]:
        return {d.name: self.files[p] for p, d in self.described.items() if d.board == board}


def fetch_release(
    base_url: str,
    trusted_root: bytes,
    state: Path,
    version: str,
    running: str,
    fetcher: ResumingFetcher | None = None,
) -> StagedRelease:
    """Verify and download release `version` from the cloud at `base_url` (its `/updates/`),
    keeping TUF metadata and the staged files under `state`; UpdateRefused with the reason."""
    if rel.parse_version(version) < rel.parse_version(running):
        raise UpdateRefused("older", f"release {version} is older than the running {running}")
    staging = state / "staging" / version
    fetcher = fetcher or ResumingFetcher(state / "partial")
    updater = _refreshed(base_url, trusted_root, state, staging, fetcher)
    index = updater.get_targetinfo(rel.index_path(version))
    if index is None:
        raise UpdateRefused("unknown", f"the cloud's signed targets hold no release {version}")
    listed = json.loads(Path(_download(updater, fetcher, index, staging)).read_bytes())["files"]
    files: dict[str, Path] = {}
    described: dict[str, rel.ReleaseFile] = {}
    for path in listed:
        info = updater.get_targetinfo(path)
        if info is None:
            raise UpdateRefused("unknown", f"release {version} lists {path}, which is not signed")
        described[path] = rel.describe(path, info.length, info.custom)
        files[path] = Path(_download(updater, fetcher, info, staging))
    fetcher.forget()
    return StagedRelease(version, files, described, sum(fetcher.received.values()))


def fetch_config(
    base_url: str, trusted_root: bytes, state: Path, version: int, running: int
) -> tuple[bytes, int]:
    """Verify and download fleet configuration `version` (O-OTA-4) with the same checks as a
    release; its JSON and the bytes fetched, or UpdateRefused with the reason."""
    if version <= running:
        raise UpdateRefused("older", f"configuration {version} is not newer than the {running} "
                            "this car runs")  # fmt: skip
    staging = state / "staging" / f"config-{version}"
    fetcher = ResumingFetcher(state / "partial")
    updater = _refreshed(base_url, trusted_root, state, staging, fetcher)
    info = updater.get_targetinfo(rel.config_path(version))
    if info is None:
        raise UpdateRefused(
            "unknown", f"the cloud's signed targets hold no configuration {version}"
        )
    body = Path(_download(updater, fetcher, info, staging)).read_bytes()
    fetcher.forget()
    return body, sum(fetcher.received.values())


def _refreshed(
    base_url: str, trusted_root: bytes, state: Path, staging: Path, fetcher: ResumingFetcher
) -> Updater:
    """python-tuf's client on the cloud's repository, its metadata brought up to date (from
    what the car held, or the root it was provisioned with); UpdateRefused with the reason."""
    metadata = state / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    known = metadata / "root.json"
    updater = Updater(
        str(metadata),
        f"{base_url.rstrip('/')}/updates/metadata/",
        str(staging),
        f"{base_url.rstrip('/')}/updates/targets/",
        fetcher=fetcher,
        bootstrap=None if known.exists() else trusted_root,
    )
    try:
        updater.refresh()
    except tuf_errors.ExpiredMetadataError as exc:
        raise UpdateRefused("expired", str(exc)) from exc
    except tuf_errors.UnsignedMetadataError as exc:
        raise UpdateRefused("unsigned", str(exc)) from exc
    except tuf_errors.BadVersionNumberError as exc:
        raise UpdateRefused("rollback", str(exc)) from exc
    except tuf_errors.RepositoryError as exc:
        raise UpdateRefused("metadata", str(exc)) from exc
    except tuf_errors.DownloadError as exc:
        raise UpdateRefused("unreachable", str(exc)) from exc
    return updater


def _download(updater: Updater, fetcher: ResumingFetcher, info: TargetFile, staging: Path) -> str:
    """One verified file in `staging` (kept from before if it is still the one signed)."""
    dest = str(staging / info.path.replace("/", "__"))
    try:
        return updater.find_cached_target(info, dest) or updater.download_target(info, dest)
    except (tuf_errors.LengthOrHashMismatchError, tuf_errors.DownloadLengthMismatchError) as exc:
        fetcher.forget()
        raise UpdateRefused("tampered", f"{info.path}: {exc}") from exc
    except tuf_errors.DownloadError as exc:  # cut: what arrived is kept for the next try
        raise UpdateRefused("interrupted", f"{info.path}: {exc}") from exc

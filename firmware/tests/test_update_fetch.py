"""A release reaches the car verified (SPEC O-OTA-1, O-OTA-2): the operator makes it with the
offline keys (`tools.release`), the cloud publishes and serves it (`cloud.update_repo` behind a
real `kagi cloud` HTTP server), the car's tuf client fetches it. What must be refused is: a
release signed with the cloud's online key only, a file altered on the cloud, a version older than
the running one, metadata past its expiry (a frozen repository). A download cut half-way resumes
from where it stopped."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Targets

from cloud.policy import default_policy
from cloud.server import ApiThread
from cloud.store import open_store
from cloud.update_repo import PublishRefused, UpdateRepo
from firmware.update_fetch import ResumingFetcher, UpdateRefused, fetch_release
from protocol.release import load_signer
from tools import release

WHEEL = "kagi-0.2.0-py3-none-any.whl"


@dataclass
class Cloud:
    url: str
    repo: UpdateRepo
    keys: Path
    root: bytes


def make_release(tmp: Path, version: str, size: int = 2000) -> list[release.Part]:
    """A release's parts: a wheel of `size` bytes and a board's two files."""
    wheel = tmp / f"kagi-{version}-py3-none-any.whl"
    wheel.write_bytes(os.urandom(size))
    board = {"main.py": f"VERSION = {version!r}\n".encode(), "pins.py": b"LED = 25\n"}
    return release.parts(wheel, {"pico": board})


def publish(cloud: Cloud, tmp: Path, version: str, size: int = 2000) -> dict[str, bytes]:
    targets, files = release.sign(
        cloud.keys, version, make_release(tmp, version, size), cloud.repo.current_targets()
    )
    cloud.repo.publish(targets, files)
    return files


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    keys = tmp_path / "keys"
    root = release.keys(keys).read_bytes()
    repo = UpdateRepo(tmp_path / "repo", load_signer(keys / "online.key"))
    repo.init(root)
    store = open_store(str(tmp_path / "cloud.db"))
    with ApiThread(store, default_policy(), updates=repo) as api:
        yield Cloud(api.url, repo, keys, root)
    store.close()


def test_a_published_release_reaches_the_car_verified(cloud: Cloud, tmp_path: Path) -> None:
    """O-OTA-1, O-OTA-2: every file of the release, byte for byte, with its signed version."""
    files = publish(cloud, tmp_path, "0.2.0")
    assert cloud.repo.versions() == ["0.2.0"]
    staged = fetch_release(cloud.url, cloud.root, tmp_path / "car", "0.2.0", running="0.1.0")
    assert staged.version == "0.2.0"
    assert staged.unit_wheel().read_bytes() == files[f"releases/0.2.0/unit/{WHEEL}"]
    board = staged.board_files("pico")
    assert sorted(board) == ["main.py", "pins.py"]
    assert board["main.py"].read_text() == "VERSION = '0.2.0'\n"
    assert {d.version for d in staged.described.values()} == {"0.2.0"}


def test_the_next_release_is_fetched_after_the_first(cloud: Cloud, tmp_path: Path) -> None:
    """The car keeps its TUF metadata between updates; a second release is verified from it."""
    publish(cloud, tmp_path, "0.2.0")
    fetch_release(cloud.url, cloud.root, tmp_path / "car", "0.2.0", running="0.1.0")
    publish(cloud, tmp_path, "0.3.0")
    assert cloud.repo.versions() == ["0.2.0", "0.3.0"]
    staged = fetch_release(cloud.url, cloud.root, tmp_path / "car", "0.3.0", running="0.2.0")
    assert staged.board_files("pico")["main.py"].read_text() == "VERSION = '0.3.0'\n"


def test_a_release_signed_with_the_online_key_only_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    """O-OTA-1: the cloud cannot make a release: it refuses to publish one its online key
    signed, and a cloud that wrote one into its repository anyway is refused by the car."""
    publish(cloud, tmp_path, "0.2.0")
    forged = Metadata[Targets].from_bytes(cloud.repo.current_targets() or b"")
    forged.signed.version += 1
    forged.signatures.clear()
    forged.sign(load_signer(cloud.keys / "online.key"))
    with pytest.raises(PublishRefused, match="not signed by the release"):
        cloud.repo.publish(forged.to_bytes(), {})

    (cloud.repo.metadata / "targets.json").write_bytes(forged.to_bytes())
    cloud.repo._sign_online(forged.signed.version, snapshot=True)  # a cloud gone rogue
    with pytest.raises(UpdateRefused) as refused:
        fetch_release(cloud.url, cloud.root, tmp_path / "car", "0.2.0", running="0.1.0")
    assert refused.value.reason == "unsigned"


def test_a_file_altered_on_the_cloud_is_refused_and_nothing_is_staged(
    cloud: Cloud, tmp_path: Path
) -> None:
    """O-OTA-2: the hash signed offline does not match: refused before anything is replaced."""
    publish(cloud, tmp_path, "0.2.0")
    board_file = cloud.repo.targets_dir / "releases/0.2.0/boards/pico/main.py"
    board_file.write_text("import os; os.system('unlock')\n")
    with pytest.raises(UpdateRefused) as refused:
        fetch_release(cloud.url, cloud.root, tmp_path / "car", "0.2.0", running="0.1.0")
    assert refused.value.reason == "tampered"
    assert "main.py" in refused.value.detail
    staging = tmp_path / "car" / "staging" / "0.2.0"
    assert not any(p.name.endswith("main.py") for p in staging.iterdir())


def test_an_older_version_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    """O-OTA-2: a version older than what the unit runs (a rollback attack) is never taken,
    however well signed."""
    publish(cloud, tmp_path, "0.2.0")
    with pytest.raises(UpdateRefused) as refused:
        fetch_release(cloud.url, cloud.root, tmp_path / "car", "0.2.0", running="0.3.1")
    assert refused.value.reason == "older"


def test_expired_metadata_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    """O-OTA-2: a repository frozen in the past (its timestamp expired) is refused."""
    cloud.repo.clock = lambda: dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    publish(cloud, tmp_path, "0.2.0")
    with pytest.raises(UpdateRefused) as refused:
        fetch_release(cloud.url, cloud.root, tmp_path / "car", "0.2.0", running="0.1.0")
    assert refused.value.reason == "expired"


def test_the_cloud_renews_its_timestamp_before_it_expires(cloud: Cloud, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    cloud.repo.clock = lambda: now - dt.timedelta(hours=20)
    publish(cloud, tmp_path, "0.2.0")
    cloud.repo.clock = lambda: now
    assert cloud.repo.refresh() is True
    assert cloud.repo.refresh() is False  # fresh: nothing to do
    fetch_release(cloud.url, cloud.root, tmp_path / "car", "0.2.0", running="0.1.0")


class CuttingProxy:
    """A TCP proxy to the cloud that drops the first connection asking for a release file
    after `cut` bytes of its reply, as a garage's signal would."""

    def __init__(self, target: str, cut: int) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target, self.cut, self.cuts = (host, int(port)), cut, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        reply = {"cutting": False, "sent": 0}  # of the request last forwarded

        def forward_requests() -> None:  # one at a time: the client waits for each reply
            try:
                while data := client.recv(65536):
                    if data[:4] == b"GET ":
                        first = b"/unit/" in data.split(b"\r\n", 1)[0] and self.cuts == 0
                        self.cuts += first
                        reply.update(cutting=first, sent=0)
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=forward_requests, daemon=True).start()
        try:
            while chunk := upstream.recv(65536):
                if reply["cutting"] and reply["sent"] + len(chunk) > self.cut:
                    client.sendall(chunk[: self.cut - reply["sent"]])
                    break
                client.sendall(chunk)
                reply["sent"] += len(chunk)
        except OSError:
            pass
        for end in (client, upstream):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.server.close()


def test_a_download_cut_half_way_resumes_where_it_stopped(cloud: Cloud, tmp_path: Path) -> None:
    """O-OTA-2: the second attempt asks only for the rest, and the whole file is verified."""
    size = 600_000
    files = publish(cloud, tmp_path, "0.2.0", size=size)
    proxy = CuttingProxy(cloud.url, cut=250_000)
    car = tmp_path / "car"
    fetcher = ResumingFetcher(car / "partial", timeout=5.0)
    with pytest.raises(UpdateRefused) as refused:
        fetch_release(proxy.url, cloud.root, car, "0.2.0", running="0.1.0", fetcher=fetcher)
    assert refused.value.reason == "interrupted"

    fetcher = ResumingFetcher(car / "partial", timeout=5.0)
    staged = fetch_release(proxy.url, cloud.root, car, "0.2.0", running="0.1.0", fetcher=fetcher)
    wheel_url = next(u for u in fetcher.resumed_from if "/unit/" in u)
    held = fetcher.resumed_from[wheel_url]
    assert 0 < held < 250_000  # what arrived before the cut, less the HTTP head
    assert fetcher.received[wheel_url] == size - held  # only the rest came the second time
    assert staged.unit_wheel().read_bytes() == files[f"releases/0.2.0/unit/{WHEEL}"]
    assert not list((car / "partial").iterdir()), "the partial files are dropped once staged"
    proxy.close()


def test_a_release_list_is_signed_too(cloud: Cloud, tmp_path: Path) -> None:
    """The release's list of its files is itself a signed target: the car takes no file the
    offline key did not list."""
    files = publish(cloud, tmp_path, "0.2.0")
    listed = json.loads(files["releases/0.2.0/release.json"])
    assert listed == {
        "version": "0.2.0",
        "files": sorted(p for p in files if not p.endswith("release.json")),
    }

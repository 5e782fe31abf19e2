"""The operator makes, signs and publishes a release from the command line (SPEC O-OTA-1):
`kagi release keys`, `kagi release sign`, `kagi cloud updates-init`, `kagi cloud
publish-release`, `kagi cloud list-releases` — each run as a process, as an operator would, and
each mistake refused naming what was wrong, with nothing published."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kagi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def ok(*args: str) -> str:
    done = kagi(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_release_is_made_offline_and_published_by_the_cloud(tmp_path: Path) -> None:
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    assert "keep root.key and targets.key offline" in ok("release", "keys", str(keys))
    assert sorted(p.name for p in keys.iterdir()) == [
        "online.key", "root.json", "root.key", "targets.key",
    ]  # fmt: skip
    again = kagi("release", "keys", str(keys))
    assert again.returncode == 2 and "keys are made once" in again.stderr

    ok("cloud", "updates-init", "--repo", str(repo), "--root", str(keys / "root.json"),
       "--online-key", str(keys / "online.key"))  # fmt: skip
    assert ok("cloud", "list-releases", "--repo", str(repo)) == ""

    wheel = tmp_path / "kagi-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 a wheel")
    out = tmp_path / "release-0.2.0"
    sign = ("release", "sign", "--keys", str(keys), "--wheel", str(wheel))
    shown = ok(*sign, "--version", "0.2.0", "--out", str(out))
    assert "release 0.2.0 signed" in shown
    assert (out / "targets" / "releases/0.2.0/unit" / wheel.name).read_bytes() == wheel.read_bytes()
    assert (out / "targets" / "releases/0.2.0/boards/pico/main.py").exists()
    assert "serves 0.2.0" in ok("cloud", "publish-release", "--repo", str(repo), str(out))

    bad = kagi(*sign, "--version", "0.3", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "version '0.3' is not MAJOR.MINOR.PATCH" in bad.stderr

    # the next release follows what the cloud serves; the same one twice is refused
    current = str(repo / "metadata" / "targets.json")
    twice = kagi(*sign, "--version", "0.2.0", "--current", current, "--out", str(tmp_path / "y"))
    assert twice.returncode == 2 and "release 0.2.0 is already published" in twice.stderr
    out3 = tmp_path / "release-0.3.0"
    mislabelled = kagi(*sign, "--version", "0.3.0", "--current", current, "--out", str(out3))
    assert mislabelled.returncode == 2
    assert "kagi-0.2.0-py3-none-any.whl is kagi 0.2.0, not 0.3.0" in mislabelled.stderr
    wheel3 = tmp_path / "kagi-0.3.0-py3-none-any.whl"
    wheel3.write_bytes(b"PK\x03\x04 the next wheel")
    ok("release", "sign", "--keys", str(keys), "--wheel", str(wheel3), "--version", "0.3.0",
       "--current", current, "--out", str(out3))  # fmt: skip
    republished = kagi("cloud", "publish-release", "--repo", str(repo), str(out))
    assert republished.returncode == 2 and "is not newer than the published" in republished.stderr
    assert "serves 0.2.0, 0.3.0" in ok("cloud", "publish-release", "--repo", str(repo), str(out3))
    assert ok("cloud", "list-releases", "--repo", str(repo)).split() == ["0.2.0", "0.3.0"]

    # SPEC O-OTA-1: the operator sends 0.3.0 to a station's cars, one canary first
    db = ("--db", str(tmp_path / "cloud.db"))
    ok("cloud", "init", *db)
    ok("cloud", "add-station", *db, "st-1", "--name", "Station 1", "--lat", "35", "--lon", "139")
    for car in ("car-1", "car-2", "car-3"):
        ok("cloud", "add-car", *db, car, "--station", "st-1")
    start = ("cloud", "rollout", "start", *db, "--repo", str(repo))
    unknown = kagi(*start, "0.9.0", "--all")
    assert unknown.returncode == 2
    assert "release 0.9.0 is not published (published: 0.2.0, 0.3.0)" in unknown.stderr
    shown = ok(*start, "0.3.0", "--station", "st-1", "--canary", "car-2")
    assert "rollout 1 of 0.3.0 started for 3 cars (canaries first: car-2)" in shown
    busy = kagi(*start, "0.3.0", "--all")
    assert busy.returncode == 2 and "rollout 1 of 0.3.0 is still going" in busy.stderr
    lines = ok("cloud", "rollout", "show", *db).splitlines()
    assert lines[0] == "rollout 1 of 0.3.0: running, stage canary"
    assert [line.split() for line in lines[1:]] == [
        ["car-2", "canary", "pending"], ["car-1", "pending"], ["car-3", "pending"],
    ]  # fmt: skip
    assert "paused" in ok("cloud", "rollout", "pause", *db, "1")
    twice = kagi("cloud", "rollout", "pause", *db, "1")
    assert twice.returncode == 2 and "rollout 1 is paused: it cannot pause" in twice.stderr
    assert "running" in ok("cloud", "rollout", "resume", *db, "1")
    assert "aborted" in ok("cloud", "rollout", "abort", *db, "1")
    listed = ok("cloud", "rollout", "list", *db).split("\t")
    assert listed[:4] == ["1", "0.3.0", "aborted", "canary"]

    # SPEC O-OTA-4: a fleet configuration, signed offline like a release, checked before
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[timing]\ndoor_timer = "2m"\nkettle = "on"\n')
    sign_config = ("release", "sign-config", "--keys", str(keys), "--version", "1",
                   "--file", str(fleet), "--current", current)  # fmt: skip
    bad = kagi(*sign_config, "--out", str(tmp_path / "c0"))
    assert bad.returncode == 2 and "fleet.toml: timing.kettle: unknown key" in bad.stderr
    fleet.write_text('[timing]\ndoor_timer = "2m"\n[station]\nname = "x"\n')
    bad = kagi(*sign_config, "--out", str(tmp_path / "c0"))
    assert bad.returncode == 2 and "station: not set by the fleet configuration" in bad.stderr
    fleet.write_text('[timing]\ndoor_timer = "2m"\n[end_checks]\nlights = "block"\n')
    assert "configuration 1 signed" in ok(*sign_config, "--out", str(tmp_path / "c1"))
    shown = ok("cloud", "publish-release", "--repo", str(repo), str(tmp_path / "c1"))
    assert "serves 0.2.0, 0.3.0 and configuration 1" in shown
    push = ("cloud", "rollout", "config", *db, "--repo", str(repo))
    missing = kagi(*push, "2")
    assert missing.returncode == 2
    assert "configuration 2 is not published (published: 1)" in missing.stderr
    assert "offered to every car" in ok(*push, "1")


def test_a_release_signed_with_other_keys_is_refused(tmp_path: Path) -> None:
    ok("release", "keys", str(tmp_path / "keys"))
    ok("release", "keys", str(tmp_path / "strangers"))
    repo = tmp_path / "repo"
    ok("cloud", "updates-init", "--repo", str(repo), "--root", str(tmp_path / "keys/root.json"),
       "--online-key", str(tmp_path / "keys/online.key"))  # fmt: skip
    wheel = tmp_path / "kagi-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04")
    out = tmp_path / "release"
    ok("release", "sign", "--keys", str(tmp_path / "strangers"), "--wheel", str(wheel),
       "--version", "0.2.0", "--out", str(out))  # fmt: skip
    refused = kagi("cloud", "publish-release", "--repo", str(repo), str(out))
    assert refused.returncode == 2
    assert "not signed by the release (targets) key" in refused.stderr
    assert ok("cloud", "list-releases", "--repo", str(repo)) == ""

    wrong_key = kagi("cloud", "updates-init", "--repo", str(tmp_path / "r2"), "--root",
                     str(tmp_path / "keys/root.json"), "--online-key",
                     str(tmp_path / "strangers/online.key"))  # fmt: skip
    assert wrong_key.returncode == 2
    assert "the online key is not the root's snapshot and timestamp key" in wrong_key.stderr

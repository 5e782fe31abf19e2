"""The real unit under `kagi unit launch` (SPEC O-OTA-3): a new version, installed beside the
running one from kagi's own wheel, starts from its slot, passes its start-up self-check and
stays, and then serves a trip; a new version whose self-check cannot pass (its cloud cannot be
reached) is killed at its deadline, and the version before starts again by itself; once healthy,
a new version sends the release's board firmware on to the board."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from boards.sim.rig import SimBoard
from cloud.policy import default_policy
from cloud.server import ApiThread
from cloud.store import open_store
from cloud.update_repo import UpdateRepo
from firmware.board_flash import flash
from firmware.slots import Slots
from firmware.tests.test_board_update import changed
from firmware.tests.test_cli import IDM, T0, snapshot
from firmware.tests.unit_process import write_config
from protocol.release import load_signer
from tools import release
from tools.rig.launched_unit import LaunchedUnit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kagi_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return next(out.glob("kagi-*.whl"))


def until(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
    return found


@pytest.fixture
def installed(tmp_path: Path, kagi_wheel: Path) -> Slots:
    slots = Slots(tmp_path / "install")
    slots.first_install(kagi_wheel, "0.1.0")
    return slots


@pytest.mark.slow
def test_a_new_version_starts_from_its_slot_passes_its_check_and_serves_a_trip(
    tmp_path: Path, installed: Slots, kagi_wheel: Path
) -> None:
    installed.switch(installed.install(kagi_wheel, "0.2.0"), deadline_s=60)
    write_config(tmp_path / "car")
    unit = LaunchedUnit(tmp_path / "car", installed.root)
    try:
        unit.start(timeout=30)
        until(lambda: not (installed.root / "trial.json").exists(), "the new version confirmed")
        outcome = installed.outcome()
        assert outcome is not None and outcome["result"] == "healthy"
        assert outcome["version"] == "0.2.0"
        new = (installed.root / "slots" / "b").resolve()
        assert f"running from {new}" in unit.log_path.read_text()
        assert unit.request({"op": "set_time", "t": T0})["ok"]
        assert unit.request({"op": "bookings", "bookings": snapshot()})["ok"]
        assert unit.request({"op": "advance", "seconds": 600})["ok"]
        unit.request({"op": "tap", "idm": IDM})
        assert unit.status()["state"] == "unlocked"
    finally:
        unit.close()


@pytest.mark.slow
def test_a_new_version_that_cannot_pass_its_check_gives_way_to_the_one_before(
    tmp_path: Path, installed: Slots, kagi_wheel: Path
) -> None:
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    cloud = (
        'cloud = "mqtt://car-crash:pw@127.0.0.1:9"\n'  # nothing listens: never reached
        f'cloud_public_key = "{public.hex()}"\n'
    )
    config = write_config(tmp_path / "car")
    config.write_text(config.read_text().replace('cloud = "none:"\n', cloud))
    installed.switch(installed.install(kagi_wheel, "0.2.0"), deadline_s=4)
    unit = LaunchedUnit(tmp_path / "car", installed.root)
    try:
        unit.spawn()
        outcome = until(installed.outcome, "the roll-back", timeout=40)
        assert outcome["result"] == "rolled_back"
        assert outcome["reason"] == "the new version did not pass its self-check in time"
        assert installed.running() == "a"
        back = (installed.root / "slots" / "a").resolve()
        until(lambda: f"running from {back}" in unit.log_path.read_text(), "the one before")
        assert "start-up check: waiting for cloud_link" in unit.log_path.read_text()
    finally:
        unit.close()


@pytest.mark.slow
def test_once_healthy_the_new_version_sends_the_releases_board_firmware_on(
    tmp_path: Path, installed: Slots, kagi_wheel: Path
) -> None:
    # SPEC O-OTA-1, O-OTA-3: through the board's USB console, from the verified release
    keys = tmp_path / "keys"
    root_json = release.keys(keys)
    repo = UpdateRepo(tmp_path / "repo", load_signer(keys / "online.key"))
    repo.init(root_json.read_bytes())
    board_fw = changed(tmp_path)  # the release's board firmware: a new build
    targets, files = release.sign(
        keys, "0.2.0", release.parts(kagi_wheel, {"pico": board_fw.wanted()}), None
    )
    repo.publish(targets, files)
    store = open_store(str(tmp_path / "cloud.db"))
    try:
        with (
            ApiThread(store, default_policy(), updates=repo) as api,
            SimBoard(tmp_path / "board", "pico", flashable=True) as sim,
        ):
            flash(sim.console_port, "pico", patience=0.5)  # what the version before put there
            before = json.loads((sim.fs / "manifest.json").read_text())["build"]
            installed.switch(installed.install(kagi_wheel, "0.2.0"), deadline_s=60)
            config = write_config(tmp_path / "car", extra=(
                f'updates = "{api.url}"\nupdates_root = "{root_json}"\n'
                f'board_console = "{sim.console_port}"\n'
            ))  # fmt: skip
            text = config.read_text().replace('board = "sim:"', f'board = "{sim.host_port}"')
            config.write_text(text)
            unit = LaunchedUnit(tmp_path / "car", installed.root)
            try:
                unit.spawn()
                outcome = until(lambda: (o := installed.outcome()) and o.get("reported") and o,
                                "the outcome reported", timeout=90)  # fmt: skip
                assert outcome["result"] == "healthy" and outcome["version"] == "0.2.0"
                flashed = json.loads((sim.fs / "manifest.json").read_text())["build"]
                assert flashed == board_fw.build != before
                log = unit.log_path.read_text()
                assert f"board: firmware build {board_fw.build} flashed and running" in log
                assert unit.status_now()["board"]["board"]["build"] == board_fw.build
            finally:
                unit.close()
    finally:
        store.close()

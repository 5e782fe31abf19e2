"""The rig itself: its files, its kinds, and one tap through every real part (the smoke test)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from hil_tests.steps import SCENARIO
from tools.rig.car import Rig
from tools.rig.phone import next_mark
from tools.rig.real import RealRig
from tools.rig.rigfile import RIGS, RigError, load_rig


def test_the_sim_rigs_have_every_feature_and_the_template_loads() -> None:
    for name in ("sim", "sim-prod"):
        sim = load_rig(name)
        assert sim.kind == "sim" and sim.lacks("power_cut") is None
    assert (load_rig("sim").settings["store"], load_rig("sim-prod").settings["store"]) == (
        "sqlite",
        "postgresql",
    )
    assert load_rig("sim-prod").settings["broker"] == "mosquitto"
    real = load_rig(str(RIGS / "real.example.toml"))
    assert real.kind == "real"
    assert real.lacks("card") == (f"rig 'real.example' ({real.description}) has no 'card'")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[rig]\nkind = 'bench'\n", "rig.kind: expected one of ('sim', 'real'), got 'bench'"),
        ("[rig]\nkind = 'sim'\nfeatures = ['teleport']\n", "unknown ['teleport']"),
        ("kind = 'sim'\n", "expected a [rig] table"),
    ],
)
def test_a_bad_rig_file_is_refused_naming_the_key(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RigError, match=re.escape(error)):
        load_rig(str(path))
    with pytest.raises(RigError, match=r"no rig file .*rigs here: .*sim"):
        load_rig("nowhere")


def test_a_rig_setting_out_of_its_choices_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "odd.toml"
    path.write_text("[rig]\nkind = 'sim'\nstore = 'mysql'\n", encoding="utf-8")
    rig = load_rig(str(path))
    with pytest.raises(RigError, match=re.escape("rig.store: expected one of ('sqlite', ")):
        rig.setting("store", "sqlite", ("sqlite", "postgresql"))


def test_a_real_rig_names_its_parts_and_says_which_one_is_not_there(tmp_path: Path) -> None:
    # a rig file without the board's port is refused before anything starts
    path = tmp_path / "bench.toml"
    path.write_text("[rig]\nkind = 'real'\nreader = 'usb'\n", encoding="utf-8")
    with pytest.raises(RigError, match=r"bench.toml: rig\.board: a real rig names its board"):
        RealRig(tmp_path / "rig", load_rig(str(path)))
    # a bench whose fixture board is not plugged in: the cloud starts, then the rig says which
    # part is missing, and stops what it started
    path.write_text(
        "[rig]\nkind = 'real'\nreader = 'usb:054c:06c1'\nboard = '/dev/nothing-here'\n"
        "fixture = '/dev/no-fixture-here'\nfeatures = ['board']\n",
        encoding="utf-8",
    )
    rig = RealRig(tmp_path / "rig", load_rig(str(path)))
    with pytest.raises(RigError, match="the fixture board at /dev/no-fixture-here"), rig:
        pass
    assert rig.cloud_process is not None and rig.cloud_process.proc is not None
    assert rig.cloud_process.proc.poll() is not None  # stopped


@pytest.mark.needs(*SCENARIO)
def test_a_card_on_the_reader_unlocks_the_car_through_every_real_part(rig: Rig) -> None:
    # SPEC S-SYNC-1, U-START-2, U-START-4: phone → cloud → broker → car; card → reader → board
    phone = rig.phone()
    start = next_mark(rig.now + dt.timedelta(minutes=30))
    booking = phone.reserve("car-001", start, start + dt.timedelta(hours=2))
    rig.wait_bookings(lambda held: [r["id"] for r in held] == [booking["id"]], "the reservation")
    rig.advance(minutes=(start - rig.now).total_seconds() / 60 - 14)  # the window opens
    assert rig.outputs["led"] == "green_blink"
    mark = rig.mark()
    assert rig.tap("XXY00001002")["state"] == "unlocked"
    rig.wait_since(mark, "hazard ×2 and the unlock relay", unlocks=1, hazard_blinks=2)
    assert rig.outputs["doors"] == "unlocked"
    assert rig.since(mark)["prompts"] == ["start_ok"]

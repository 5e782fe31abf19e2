"""The rig itself: its files, and one tap through every real part (the smoke test)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from hil_tests.rig import RIGS, RigError, SimRig, load_rig, next_mark


def test_the_sim_rig_has_every_feature_and_the_template_loads() -> None:
    sim = load_rig("sim")
    assert sim.kind == "sim" and sim.lacks("power_cut") is None
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


def test_a_card_on_the_reader_unlocks_the_car_through_every_real_part(rig: SimRig) -> None:
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

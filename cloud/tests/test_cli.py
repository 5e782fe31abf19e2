"""`kagi cloud …` admin commands, as an operator types them, on SQLite and PostgreSQL: each
command's effect is read back from the store, and each bad input is refused with a message
naming what was wrong and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud import migrations
from cloud.demo import DEMO, DEMO_FLEET_KEY
from cloud.store import open_store
from protocol.cards import card_hash
from tools.cli import main

ROOT = Path(__file__).resolve().parents[2]
KEY = "8f" * 16


def kagi(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["cloud", *argv])
    except SystemExit as exc:  # argparse refusing a value
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def admin(empty_url, capsys):
    """`kagi cloud … --db URL` on a database made by `kagi cloud init`."""
    code, out, _ = kagi(capsys, "init", "--db", empty_url, "--fleet-key", KEY)
    assert code == 0 and f"schema version {migrations.LATEST}, fleet key set" in out

    def run(*argv: str) -> tuple[int, str, str]:
        return kagi(capsys, *argv, "--db", empty_url)

    run.url = empty_url  # type: ignore[attr-defined]
    return run


def snapshot(url: str) -> tuple:
    with open_store(url, migrate=False) as db:
        return (
            db.list_members(),
            db.list_drivers(),
            db.list_cards(),
            db.list_stations(),
            db.list_cars(),
        )


def test_init_is_repeatable_and_keeps_the_key(admin, capsys):
    code, out, _ = admin("init")
    assert code == 0 and "fleet key kept" in out
    code, out, _ = admin("fleet-key")
    assert (code, out.strip()) == (0, KEY)
    code, _, err = admin("init", "--fleet-key", "00" * 16)
    assert code == 2 and "different fleet key" in err and "left as it is" in err
    assert admin("fleet-key")[1].strip() == KEY


def test_a_fleet_built_by_hand(admin):
    assert admin("add-station", "tokai-1", "--name", "Tokai 1", "--lat", "36.4466", "--lon",
                 "140.6065", "--radius", "40")[0] == 0  # fmt: skip
    assert admin("add-car", "car-001", "--station", "tokai-1", "--name", "Compact")[0] == 0
    assert admin("add-member", "XXY00001", "--name", "One", "--email", "one@example.jp")[0] == 0
    code, out, _ = admin(
        "add-driver", "XXY00001001", "--name", "Alice", "--email", "a@example.jp",
        "--licence-expiry", "2030-12-31", "--admin",
    )  # fmt: skip
    assert code == 0 and out.strip() == "driver XXY00001001 of member XXY00001 added (admin)"
    code, out, _ = admin("add-card", "XXY00001001", "--idm", "01 01 01 01 01 01 01 01")
    expected_hash = card_hash(bytes.fromhex(KEY), bytes.fromhex("0101010101010101"))
    assert code == 0 and expected_hash in out
    # a card hashed elsewhere (e.g. by the tool at the counter) can be given as its hash
    other = card_hash(bytes.fromhex(KEY), bytes.fromhex("0202020202020202"))
    assert admin("add-card", "XXY00001001", "--hash", other, "--strong")[0] == 0

    with open_store(admin.url, migrate=False) as db:
        station = db.get_station("tokai-1")
        assert (station.lat, station.lon, station.radius_m) == (36.4466, 140.6065, 40.0)
        assert db.get_car("car-001").station_id == "tokai-1"
        alice = db.get_driver("XXY00001001")
        assert alice.is_admin and str(alice.licence_expiry) == "2030-12-31"
        cards = {c.card_hash: c for c in db.list_cards(driver_id="XXY00001001")}
        assert set(cards) == {expected_hash, other} and cards[other].strong
        # the IDm itself is stored nowhere
        assert "0101010101010101" not in repr(db.list_cards())

    # SPEC U-CARD-4: a lost card is revoked at once
    code, out, _ = admin("revoke-card", "--idm", "0101010101010101")
    assert code == 0 and "revoked at" in out
    with open_store(admin.url, migrate=False) as db:
        assert not db.get_card(expected_hash).active


BAD_INPUT = [
    (["add-member", "XXY0001", "--name", "x"], "member_id: a member ID is 8 capital letters"),
    (["add-member", "XXY00001", "--name", "x", "--email", "nope"], "email: not an e-mail"),
    (
        ["add-driver", "XXY00001", "--name", "x", "--email", "x@example.jp"],
        "driver_id: a driver ID is 11 characters",
    ),
    (
        ["add-driver", "XXY00009001", "--name", "x", "--email", "x@example.jp"],
        "member 'XXY00009' does not exist (the first 8 characters of XXY00009001)",
    ),
    (
        [
            "add-driver",
            "XXY00001009",
            "--name",
            "x",
            "--email",
            "x@example.jp",
            "--licence-expiry",
            "31/12/2030",
        ],
        "argument --licence-expiry: expected a date YYYY-MM-DD, got '31/12/2030'",
    ),
    (["add-card", "XXY00001001", "--idm", "0101"], "--idm: IDm must be 8 bytes"),
    (["add-card", "XXY00001001", "--idm", "zz01010101010101"], "--idm: IDm must be hex"),
    (["add-card", "XXY00001001", "--hash", "abc"], "card_hash: a card hash is 64"),
    (["add-card", "XXY00001009", "--idm", "0303030303030303"], "driver 'XXY00001009' does"),
    (["add-card", "XXY00001001"], "one of the arguments --idm --hash is required"),
    (["revoke-card", "--idm", "0909090909090909"], "card '"),
    (["add-car", "car-009", "--station", "nowhere"], "station 'nowhere' does not exist"),
    (["add-car", "car/9", "--station", "tokai-1"], "car_id: expected 1-64 letters"),
    (["add-car", "car-001", "--station", "tokai-1"], "car car-001 already exists"),
    (
        ["add-station", "s9", "--name", "x", "--lat", "36", "--lon", "200"],
        "lon: must be between -180 and 180, got 200.0",
    ),
    (
        ["add-station", "s9", "--name", "x", "--lat", "north", "--lon", "1"],
        "argument --lat: invalid float value: 'north'",
    ),
]


def test_bad_input_is_refused_and_changes_nothing(admin):
    assert admin("add-station", "tokai-1", "--name", "T", "--lat", "36", "--lon", "140")[0] == 0
    assert admin("add-car", "car-001", "--station", "tokai-1")[0] == 0
    assert admin("add-member", "XXY00001", "--name", "One")[0] == 0
    assert admin("add-driver", "XXY00001001", "--name", "A", "--email", "a@example.jp")[0] == 0
    before = snapshot(admin.url)
    for argv, message in BAD_INPUT:
        code, out, err = admin(*argv)
        assert (code, out) == (2, ""), argv
        assert message in err, (argv, err)
    assert snapshot(admin.url) == before


def test_demo_fleet_loads_once(admin):
    code, out, _ = admin("demo")
    assert code == 0 and "demo fleet loaded" in out
    assert "XXY00001001 Alice: card IDm 0101010101010101" in out
    code, out, _ = admin("list", "cars", "--json")
    cars = [json.loads(line) for line in out.splitlines()]
    assert [c["car_id"] for c in cars] == [c["car_id"] for c in DEMO["cars"]]
    code, out, _ = admin("list", "drivers")
    assert out.splitlines()[0].split()[:3] == ["driver_id", "member_id", "name"]
    assert len(out.splitlines()) == 1 + len(DEMO["drivers"])
    # the cards are hashed with the database's fleet key (here the one init was given)
    alice = card_hash(bytes.fromhex(KEY), bytes.fromhex("0101010101010101"))
    with open_store(admin.url, migrate=False) as db:
        assert db.get_card(alice).driver_id == "XXY00001001"
    before = snapshot(admin.url)
    code, _, err = admin("demo")
    assert code == 2 and "already exists" in err and "nothing was changed" in err
    assert snapshot(admin.url) == before


def test_commands_need_an_initialised_database(tmp_path, capsys):
    missing = str(tmp_path / "missing.db")
    code, _, err = kagi(capsys, "add-member", "XXY00001", "--name", "x", "--db", missing)
    assert code == 2 and "no database here; create one with `kagi cloud init" in err
    assert not Path(missing).exists()
    code, _, err = kagi(capsys, "list", "members", "--db", str(tmp_path / "x.db"))
    assert code == 2 and "x.db: no database here" in err


def test_a_real_kagi_process_with_the_default_database(tmp_path):
    # no --db: the SQLite file of $KAGI_CLOUD_DB, else kagi-cloud.db in the current directory
    env = {k: v for k, v in os.environ.items() if k != "KAGI_CLOUD_DB"}
    env["PYTHONPATH"] = str(ROOT)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tools.cli", "cloud", *argv],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert run("demo").returncode == 0
    assert (tmp_path / "kagi-cloud.db").exists()
    listed = run("list", "members")
    assert listed.returncode == 0 and "XXY00001" in listed.stdout
    assert run("fleet-key").stdout.strip() == DEMO_FLEET_KEY
    bad = run("add-member", "XXY-0001", "--name", "x")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "kagi cloud add-member: member_id: a member ID is 8 capital letters or digits "
        "(e.g. XXY00001), got 'XXY-0001'"
    )

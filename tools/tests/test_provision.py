"""`kagi unit provision`: the file it writes is one the car unit accepts, and each part it names
is checked for real — the board firmware's hello on the simulated rig, a reader's endpoint, a
Mosquitto broker's login — and the car is registered in a real cloud database (issue 8)."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boards.sim.rig import SimBoard
from cloud.mosquitto import Mosquitto
from firmware.config import load_unit_config
from firmware.tests.unit_process import UnitProcess
from protocol import signing
from tools.cli import main

CARD_KEY = "00112233445566778899aabbccddeeff"
PUBLIC_KEY = signing.public_key_hex(signing.new_private_key())


@pytest.fixture
def board(tmp_path: Path) -> Iterator[SimBoard]:
    with SimBoard(tmp_path / "board", "pico") as sim:
        yield sim


@pytest.fixture
def reader() -> Iterator[str]:
    """A reader's endpoint that answers (what `kagi card emulate` listens on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"udp:127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto({"car-p1": "s3cret"}) as server:
        server.start()
        yield server


def provision(config: Path, *more: str) -> int:
    return main(["unit", "provision", "--config", str(config), "--timeout", "1", *more])


def by_hand(board: str, reader: str, broker: str, password: str = "s3cret") -> list[str]:
    return [
        "--car-id",
        "car-p1",
        "--card-key",
        CARD_KEY,
        "--station-name",
        "Tokai station 1",
        "--lat",
        "36.4466",
        "--lon",
        "140.6065",
        "--radius",
        "40",
        "--board",
        board,
        "--reader",
        reader,
        "--broker",
        broker,
        "--broker-password",
        password,
        "--cloud-public-key",
        PUBLIC_KEY,
    ]


def lines(out: str) -> list[str]:
    return [" ".join(line.split()) for line in out.splitlines()]


def test_the_written_config_is_accepted_and_each_part_answers(
    tmp_path, board, reader, broker, capsys
):
    # SPEC X-SEC-1: the car holds the cloud's public key; X-SEC-2: it logs in as itself
    config = tmp_path / "unit" / "unit.toml"
    assert provision(config, *by_hand(board.host_port, reader, broker.url)) == 0
    out = lines(capsys.readouterr().out)
    assert out == [
        f"ok config {config} written; the unit accepts it",
        f"ok board pico firmware 0.1.0, pin map pico-r1, build - on {board.host_port}",
        f"ok reader nfcpy udp reader UDP at {reader}",
        f"ok broker car-p1 logged in to mqtt://car-p1:***@127.0.0.1:{broker.port}",
    ]
    unit = load_unit_config(config)
    assert (unit.car_id, unit.card_key, unit.board, unit.reader) == (
        "car-p1",
        CARD_KEY,
        board.host_port,
        reader,
    )
    assert unit.cloud == f"mqtt://car-p1:s3cret@127.0.0.1:{broker.port}"
    assert unit.cloud_public_key == PUBLIC_KEY
    station = unit.trip.station
    assert (station.name, station.lat, station.lon, station.radius_m) == (
        "Tokai station 1",
        36.4466,
        140.6065,
        40.0,
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # the password is the owner's only
    # and the unit runs on it: its board link comes up, its broker link connects
    process = UnitProcess(config.parent)
    try:
        process.start()
        deadline = time.monotonic() + 10
        status = process.status()
        while not (status["board"]["up"] and status.get("cloud", {}).get("connected")):
            assert time.monotonic() < deadline, (status, process.log_tail())
            time.sleep(0.05)
            status = process.status()
        assert status["car_id"] == "car-p1"
    finally:
        process.close()


def test_each_part_that_does_not_answer_is_named(tmp_path, broker, capsys):
    master, slave = os.openpty()  # a serial port with no board behind it
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        nobody = f"udp:127.0.0.1:{sock.getsockname()[1]}"
    try:
        config = tmp_path / "unit.toml"
        port = os.ttyname(slave)
        assert provision(config, *by_hand(port, nobody, broker.url, "wrong")) == 1
        out = lines(capsys.readouterr().out)
        assert out[0] == f"ok config {config} written; the unit accepts it"
        assert out[1] == f"FAILED board no hello from the board on {port} within 1 s"
        assert out[2].startswith(f"FAILED reader no reader at {nobody}: ")
        assert out[2].endswith(f"nothing listens at {nobody} (Connection refused)")
        assert out[3] == (
            f"FAILED broker mqtt://car-p1:***@127.0.0.1:{broker.port} refused the login of "
            "car-p1: Not authorized"
        )
        assert "wrong" not in "\n".join(out)  # the password is never shown
        # the file is there all the same: fix the part, check again
        assert provision(config, "--check-only") == 1
        again = lines(capsys.readouterr().out)
        assert again[0] == f"ok config {config}: the unit accepts it"
        assert again[1:] == out[1:]
    finally:
        os.close(master)
        os.close(slave)


def test_bad_input_writes_nothing(tmp_path, capsys):
    config = tmp_path / "unit.toml"
    assert provision(config, "--car-id", "car-p1", "--card-key", "not-hex") == 2
    assert capsys.readouterr().err == (
        "kagi unit provision: the unit would refuse it, nothing written: "
        "unit.card_key: expected hex digits\n"
    )
    assert not config.exists() and list(tmp_path.iterdir()) == []
    assert provision(config, "--card-key", CARD_KEY) == 2
    assert "kagi unit provision: --car-id is needed" in capsys.readouterr().err
    broker = ["--broker", "mqtt://broker:1883"]
    assert provision(config, "--car-id", "car-p1", "--card-key", CARD_KEY, *broker) == 2
    assert "--broker needs --broker-password, or --cloud-db" in capsys.readouterr().err
    assert provision(config, "--car-id", "car-p1", "--card-key", CARD_KEY) == 0
    capsys.readouterr()
    assert provision(config, "--car-id", "car-p2", "--card-key", CARD_KEY) == 2
    assert f"{config} exists: --force replaces it" in capsys.readouterr().err
    assert load_unit_config(config).car_id == "car-p1"


def test_from_the_cloud_the_car_is_registered_with_its_own_broker_account(tmp_path, capsys):
    # S-SYNC-1: the unit holds the fleet key and the station the cloud has for it
    from cloud.accounts import Accounts
    from cloud.store import open_store
    from cloud.store.fleet import FLEET_KEY
    from cloud.sync import public_key

    db = str(tmp_path / "cloud.db")
    with open_store(db) as store:
        store.set_setting(FLEET_KEY, "ab" * 32)
        store.add_station("tokai-1", name="Tokai station 1", lat=36.4466, lon=140.6065, radius_m=30)
    accounts = tmp_path / "broker.passwd"
    config = tmp_path / "unit.toml"
    args = ["--car-id", "car-p2", "--cloud-db", db, "--station", "tokai-1"]
    args += ["--accounts", str(accounts), "--broker", "mqtt://127.0.0.1:1"]
    assert provision(config, *args) == 1  # nothing listens on port 1: the one check that fails
    out = lines(capsys.readouterr().out)
    assert out[0] == "ok cloud car car-p2 registered at station tokai-1"
    assert out[1] == f"ok broker account car-p2 created in {accounts}"
    assert out[-1].startswith("FAILED broker cannot reach mqtt://car-p2:***@127.0.0.1:1")
    unit = load_unit_config(config)
    assert unit.card_key == "ab" * 32
    station = unit.trip.station
    assert (station.name, station.lat, station.lon, station.radius_m) == (
        "Tokai station 1",
        36.4466,
        140.6065,
        30.0,
    )
    password = unit.cloud.split(":")[2].split("@")[0]
    assert Accounts(accounts).verify("car-p2", password)
    with open_store(db, migrate=False) as store:
        assert store.get_car("car-p2").station_id == "tokai-1"
        assert unit.cloud_public_key == public_key(store)
    # the car is the cloud's car at its station: provisioning it for another station is refused
    with open_store(db, migrate=False) as store:
        store.add_station("tokai-2", name="Tokai station 2", lat=36.45, lon=140.61, radius_m=30)
    again = ["--car-id", "car-p2", "--cloud-db", db, "--station", "tokai-2"]
    assert provision(tmp_path / "other.toml", *again) == 2
    assert capsys.readouterr().err == (
        "kagi unit provision: car car-p2 is registered at station tokai-1, not tokai-2\n"
    )
    assert not (tmp_path / "other.toml").exists()

"""The car and the cloud end to end: a real broker (Mosquitto, and the embedded one), the cloud's
API and sync, and a real `kagi unit run` whose cloud is `mqtt://…`.

What a driver and an operator would check: a reservation made on the phone is in the car within a
second; a cancellation and a lost card are too, and the car then refuses the tap; the trip the
car starts shows on the phone.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.auth import hash_password
from cloud.broker import EmbeddedBroker
from cloud.mosquitto import CLOUD_USER, Mosquitto
from cloud.policy import default_policy
from cloud.server import ApiThread
from cloud.store import Store, open_store
from cloud.store.fleet import FLEET_KEY
from cloud.sync import CloudSync, SyncConfig, public_key
from firmware.tests.unit_process import UnitProcess
from protocol.cards import card_hash

pytestmark = pytest.mark.slow

JST = dt.timezone(dt.timedelta(hours=9))
CAR, CAR_PASSWORD, CLOUD_PASSWORD = "car-001", "car-secret", "cloud-secret"
DRIVER, PASSWORD = "XXY00001002", "driver-pw"
FLEET = "00112233445566778899aabbccddeeff"
CARD, SPARE = "0101010101010101", "0202020202020202"


def hashed(idm: str) -> str:
    return card_hash(bytes.fromhex(FLEET), bytes.fromhex(idm))


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    accounts = {CAR: CAR_PASSWORD, CLOUD_USER: CLOUD_PASSWORD}
    if request.param == "mosquitto":
        with Mosquitto(accounts) as mosquitto:
            yield f"127.0.0.1:{mosquitto.port}"
    else:
        embedded = EmbeddedBroker(accounts, cloud_password=CLOUD_PASSWORD).start()
        try:
            yield f"127.0.0.1:{embedded.port}"
        finally:
            embedded.stop()


@pytest.fixture
def cloud(tmp_path: Path, broker: str) -> Iterator[tuple[Store, ApiThread]]:
    db = str(tmp_path / "cloud.db")
    store = open_store(db)
    store.set_setting(FLEET_KEY, FLEET)
    store.add_station("st-1", name="Station 1", lat=35.0, lon=139.0, radius_m=50)
    store.add_car(CAR, station_id="st-1")
    store.add_member("XXY00001", name="Example")
    store.add_driver(DRIVER, name="Bob", email="bob@example.jp", licence_expiry=dt.date(2031, 1, 1))
    store.set_password_hash(DRIVER, hash_password(PASSWORD))
    store.add_card(DRIVER, hashed(CARD))
    policy = default_policy()
    config = SyncConfig(f"mqtt://{broker}", password=CLOUD_PASSWORD, poll_interval=0.02)
    sync_store = open_store(db, migrate=False)
    with CloudSync(sync_store, policy, config) as sync, ApiThread(store, policy, cars=sync) as api:
        yield store, api
    sync_store.close()
    store.close()


@pytest.fixture
def unit(tmp_path: Path, cloud: tuple[Store, ApiThread], broker: str) -> Iterator[UnitProcess]:
    store, _ = cloud
    folder = tmp_path / "unit"
    folder.mkdir()
    (folder / "unit.toml").write_text(
        "[unit]\n"
        f'car_id = "{CAR}"\n'
        f'card_key = "{FLEET}"\n'
        'database = "unit.db"\n'
        'reader = "sim:"\n'
        'board = "sim:"\n'
        f'cloud = "mqtt://{CAR}:{CAR_PASSWORD}@{broker}"\n'
        f'cloud_public_key = "{public_key(store)}"\n'
        'clock = "manual"\n'
        'control = "control.sock"\n',
        encoding="utf-8",
    )
    process = UnitProcess(folder)
    process.start()
    yield process
    process.close()


def until(check: Callable[[], Any], seconds: float, what: str) -> float:
    """Seconds until `check()` is true; fails naming `what` after `seconds`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if check():
            return time.monotonic() - t0
        time.sleep(0.01)
    raise AssertionError(f"{what}: not within {seconds} s")


class Phone:
    def __init__(self, api: ApiThread) -> None:
        self.http = httpx.Client(base_url=api.url, timeout=10)
        r = self.http.post("/v1/login", json={"account_id": DRIVER, "password": PASSWORD})
        self.http.headers["Authorization"] = f"Bearer {r.json()['token']}"

    def reserve(self, start: dt.datetime, hours: int = 1) -> str:
        end = start + dt.timedelta(hours=hours)
        body = {"car_id": CAR, "start": start.isoformat(), "end": end.isoformat()}
        r = self.http.post("/v1/reservations", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def held_version(unit: UnitProcess) -> int:
    return int(unit.status()["bookings_version"])


def arrives(unit: UnitProcess, change: Callable[[], Any], what: str) -> float:
    """Make `change` in the cloud; seconds until the car holds a newer snapshot."""
    before = held_version(unit)
    change()
    return until(lambda: held_version(unit) > before, 1.0, what)


def tap_at(unit: UnitProcess, when: dt.datetime, idm: str) -> str:
    unit.request({"op": "set_time", "t": when.timestamp()})
    unit.request({"op": "tap", "idm": idm})
    return str(unit.status()["state"])


def test_what_the_phone_does_reaches_the_car_and_what_the_car_does_reaches_the_phone(cloud, unit):
    store, api = cloud
    phone = Phone(api)
    tomorrow = (dt.datetime.now(JST) + dt.timedelta(days=1)).replace(
        minute=0, second=0, microsecond=0
    )
    first = tomorrow.replace(hour=9)
    until(lambda: held_version(unit) > 0, 5, "the car's first snapshot")

    # SPEC S-SYNC-1: a new reservation is in the car within a second…
    ids: list[str] = []
    seconds = arrives(unit, lambda: ids.append(phone.reserve(first)), "the new reservation")
    # …and so is its cancellation, after which the card no longer opens the car.
    cancel = f"/v1/reservations/{ids[0]}/cancel"
    arrives(unit, lambda: phone.http.post(cancel, json={"fee": 0}).raise_for_status(), "cancel")
    assert tap_at(unit, first + dt.timedelta(minutes=1), CARD) == "idle"

    # SPEC U-CARD-4: a card revoked in the cloud stops opening the car at once.
    second = tomorrow.replace(hour=14)
    arrives(unit, lambda: ids.append(phone.reserve(second)), "the second reservation")
    arrives(unit, lambda: store.revoke_card(hashed(CARD)), "the revocation")
    assert tap_at(unit, second + dt.timedelta(minutes=1), CARD) == "idle"

    # A card registered at the counter opens it; the trip shows on the phone (S-SYNC-2).
    arrives(unit, lambda: store.add_card(DRIVER, hashed(SPARE)), "the new card")
    assert tap_at(unit, second + dt.timedelta(minutes=2), SPARE) == "unlocked"
    reservation = ids[1]
    until(
        lambda: phone.http.get(f"/v1/reservations/{reservation}").json()["status"] == "in_use",
        5,
        "the trip's start at the cloud",
    )
    assert seconds < 1.0

"""The demo fleet: two stations, three cars, two members, four drivers with their cards, and
two console accounts (an operator `ops` and a `viewer`, password `STAFF_PASSWORD`).

`kagi cloud demo` loads it; the simulated car (`kagi sim run`) and the HIL scenarios drive it.
Every demo account's password is `DEMO_PASSWORD`; the fleet key is the one of
docs/unit.example.toml, so a demo unit reads demo cards.
"""

from __future__ import annotations

from typing import Any

DEMO_FLEET_KEY = "00112233445566778899aabbccddeeff"
DEMO_PASSWORD = "demo"  # every demo account's password (a demo, not a secret)
STAFF_PASSWORD = "demo-staff"  # the demo console accounts' (staff passwords need 8 characters)

DEMO: dict[str, list[dict[str, Any]]] = {
    "stations": [
        {
            "station_id": "tokai-1",
            "name": "Tokai station 1",
            "lat": 36.4466,
            "lon": 140.6065,
            "radius_m": 50.0,
        },
        {
            "station_id": "tokai-2",
            "name": "Tokai station 2",
            "lat": 36.4530,
            "lon": 140.6010,
            "radius_m": 40.0,
        },
    ],
    "cars": [
        {"car_id": "car-001", "station_id": "tokai-1", "name": "Compact 1"},
        {"car_id": "car-002", "station_id": "tokai-1", "name": "Compact 2"},
        {"car_id": "car-003", "station_id": "tokai-2", "name": "Van 1"},
    ],
    "members": [
        {"member_id": "XXY00001", "name": "Demo Member One", "email": "one@example.jp"},
        {"member_id": "XXY00002", "name": "Demo Member Two", "email": "two@example.jp"},
    ],
    "drivers": [
        {
            "driver_id": "XXY00001001",
            "name": "Alice",
            "email": "alice@example.jp",
            "licence_expiry": "2030-12-31",
            "is_admin": True,
        },
        {
            "driver_id": "XXY00001002",
            "name": "Bob",
            "email": "bob@example.jp",
            "licence_expiry": "2030-12-31",
            "is_admin": False,
        },
        {
            "driver_id": "XXY00002001",
            "name": "Carol",
            "email": "carol@example.jp",
            "licence_expiry": "2031-03-31",
            "is_admin": True,
        },
        {
            "driver_id": "XXY00002002",
            "name": "Dan (licence expired)",
            "email": "dan@example.jp",
            "licence_expiry": "2024-01-31",
            "is_admin": False,
        },
    ],
    "staff": [  # the console's accounts (O-ROLE-1)
        {"staff_id": "ops", "name": "Demo Operator", "role": "operator"},
        {"staff_id": "viewer", "name": "Demo Viewer", "role": "viewer"},
    ],
    "cards": [
        {"driver_id": "XXY00001001", "idm": "0101010101010101"},
        {"driver_id": "XXY00001002", "idm": "0202020202020202"},
        {"driver_id": "XXY00002001", "idm": "0404040404040404"},
        {"driver_id": "XXY00002002", "idm": "0505050505050505"},
    ],
}

# The car the simulated rig runs, at its station; the drivers' cards and e-mail addresses.
CAR = "car-001"
STATION = "tokai-1"
STATION_POSITION = next(
    (s["lat"], s["lon"]) for s in DEMO["stations"] if s["station_id"] == STATION
)
DRIVER_CARDS = {c["driver_id"]: str(c["idm"]) for c in DEMO["cards"]}
DRIVER_EMAILS = {d["driver_id"]: str(d["email"]) for d in DEMO["drivers"]}

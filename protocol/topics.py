"""MQTT topics of the car <-> cloud contract, all under `kagi/v1/cars/{car_id}/`.

| kind           | direction   | QoS | retained | what                                            |
| -------------- | ----------- | --- | -------- | ----------------------------------------------- |
| `reservations` | cloud → car | 1   | yes      | the car's signed booking snapshot (S-SYNC-1)     |
| `commands`     | cloud → car | 1   | no       | signed remote operations (S-SYNC-3)              |
| `events`       | car → cloud | 1   | no       | every trip event and command result (S-SYNC-2)  |
| `state`        | car → cloud | 1   | yes      | what the car looks like now (S-SYNC-4)          |
| `online`       | car → cloud | 1   | yes      | online/offline, offline set by the last will    |

A car's broker account is named after its car ID and may use only `kagi/v1/cars/{car_id}/#`
(SPEC X-SEC-2; Mosquitto: `pattern readwrite kagi/v1/cars/%u/#`).
"""

from __future__ import annotations

import re

ROOT = "kagi/v1/cars"
KINDS = ("reservations", "commands", "events", "state", "online")
TO_CAR = ("reservations", "commands")
FROM_CAR = ("events", "state", "online")
RETAINED = ("reservations", "state", "online")
QOS = 1
SHARE_GROUP = "kagi-cloud"  # cloud workers share the event stream (MQTT 5 / 3.1.1 $share)

# Letters, digits, '-', '_' and '.': never a topic wildcard, separator or ACL pattern escape.
CAR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_car_id(car_id: str) -> str:
    if not isinstance(car_id, str) or not CAR_ID.fullmatch(car_id):
        raise ValueError(
            f"car_id: expected 1-64 letters, digits, '.', '_' or '-' (no '/', '+', '#'), "
            f"got {car_id!r}"
        )
    return car_id


def topic(car_id: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"topic kind: expected one of {KINDS}, got {kind!r}")
    return f"{ROOT}/{check_car_id(car_id)}/{kind}"


def car_filter(car_id: str) -> str:
    """Everything of one car: what its broker account may read and write."""
    return f"{ROOT}/{check_car_id(car_id)}/#"


def fleet_filter(kind: str, shared: bool = False) -> str:
    """One kind of message from every car; `shared` splits it among the cloud's workers."""
    if kind not in KINDS:
        raise ValueError(f"topic kind: expected one of {KINDS}, got {kind!r}")
    plain = f"{ROOT}/+/{kind}"
    return f"$share/{SHARE_GROUP}/{plain}" if shared else plain


def parse(name: str) -> tuple[str, str]:
    """`kagi/v1/cars/{car_id}/{kind}` → (car_id, kind); ValueError for any other topic."""
    prefix = ROOT + "/"
    parts = name[len(prefix) :].split("/") if name.startswith(prefix) else []
    if len(parts) != 2 or parts[1] not in KINDS:
        raise ValueError(f"not a kagi car topic: {name!r}")
    return check_car_id(parts[0]), parts[1]

"""The messages of the car <-> cloud contract, version 1, and their validation.

Every payload is one UTF-8 JSON object. Each type has `to_body()` (what goes on the wire, inside
a signed envelope for cloud → car) and `from_body()`, which refuses anything that does not match
with a `MessageError` naming the field and the reason (SPEC X-SEC-3). Times are seconds since the
epoch (UTC, float); card IDs only ever appear as keyed hashes (64 hex digits).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.topics import check_car_id

VERSION = 1
MAX_PAYLOAD = 256 * 1024  # a snapshot of a busy car is a few kB; anything this big is not ours
DRIVER_COMMANDS = (
    "start",
    "end",
    "reunlock",
    "forgotten_unlock",
    "forgotten_lock",
    "register_card",
    "locate",
)
# O-CAR-1: the operator's console only
OPERATOR_COMMANDS = (
    "lock",
    "unlock",
    "immobilise",
    "release",
    "operator_end",
    "service_mode",
    "self_test",
)
# O-OTA-1, O-OTA-4: the cloud's own: "this version, this fleet configuration is yours now"
CLOUD_COMMANDS = ("update", "configure")
COMMANDS = DRIVER_COMMANDS + OPERATOR_COMMANDS + CLOUD_COMMANDS
# The arguments a command must carry, and their type (a reservation_id is optional everywhere)
REQUIRED_ARGS: dict[str, dict[str, type]] = {
    "service_mode": {"on": bool},
    "update": {"version": str},
    "configure": {"version": int},
}
# What a car reports of an update it was offered (`update_step` events), in the order it goes
UPDATE_STEPS = (
    "offered", "downloading", "downloaded", "waiting", "installed",
    "healthy", "rolled_back", "refused", "failed",
)  # fmt: skip
# …and of a fleet configuration it was offered (`config_step` events)
CONFIG_STEPS = ("offered", "waiting", "applied", "refused")
CARD_HASH = re.compile(r"[0-9a-f]{64}")
ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class MessageError(ValueError):
    """A payload that is not a valid message; `field` names where, the text says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def decode(payload: bytes) -> dict[str, Any]:
    """A payload as a JSON object, or MessageError."""
    if len(payload) > MAX_PAYLOAD:
        raise MessageError("payload", f"{len(payload)} bytes, more than {MAX_PAYLOAD}")
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError("payload", f"not UTF-8 JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MessageError("payload", f"expected a JSON object, got {type(value).__name__}")
    return value


def encode(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# ---- field readers: each names the field it refuses ------------------------------------------


def _get(body: Mapping[str, Any], name: str, where: str = "") -> Any:
    if not isinstance(body, Mapping):
        raise MessageError(where or "body", "expected an object")
    if name not in body:
        raise MessageError(where + name, "missing")
    return body[name]


def _str(body: Mapping[str, Any], name: str, where: str = "", pattern: re.Pattern[str] = ID) -> str:
    value = _get(body, name, where)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MessageError(
            where + name, f"expected an ID matching {pattern.pattern}, got {value!r}"
        )
    return value


def _time(body: Mapping[str, Any], name: str, where: str = "") -> float:
    value = _get(body, name, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MessageError(where + name, f"expected seconds since the epoch, got {value!r}")
    if not 0 <= value < 2**34:
        raise MessageError(where + name, f"out of range: {value!r}")
    return float(value)


def _int(body: Mapping[str, Any], name: str, where: str = "", minimum: int = 0) -> int:
    value = _get(body, name, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MessageError(where + name, f"expected an integer ≥ {minimum}, got {value!r}")
    return value


def _object(body: Mapping[str, Any], name: str, where: str = "") -> dict[str, Any]:
    value = _get(body, name, where)
    if not isinstance(value, dict):
        raise MessageError(where + name, f"expected an object, got {type(value).__name__}")
    return value


def _list(body: Mapping[str, Any], name: str, where: str = "") -> list[Any]:
    value = _get(body, name, where)
    if not isinstance(value, list):
        raise MessageError(where + name, f"expected a list, got {type(value).__name__}")
    return value


def _version(body: Mapping[str, Any]) -> None:
    if _get(body, "v") != VERSION:
        raise MessageError("v", f"protocol version {body['v']!r}, this side speaks {VERSION}")


# ---- cloud → car -------------------------------------------------------------------------------


def check_bookings(bookings: Any) -> dict[str, Any]:
    """The car's booking data: `version`, `reservations` [{id, driver_id, start, end}], `drivers`
    [{id, licence_expiry (ISO day), cards [hash], strong_cards [hash ⊆ cards]}]."""
    if not isinstance(bookings, dict):
        raise MessageError("bookings", "expected an object")
    _int(bookings, "version", "bookings.", minimum=1)
    drivers = set()
    for i, d in enumerate(_list(bookings, "drivers", "bookings.")):
        where = f"bookings.drivers[{i}]."
        drivers.add(_str(d, "id", where))
        expiry = _get(d, "licence_expiry", where)
        try:
            dt.date.fromisoformat(expiry)
        except (TypeError, ValueError):
            raise MessageError(
                where + "licence_expiry", f"expected YYYY-MM-DD, got {expiry!r}"
            ) from None
        cards = _list(d, "cards", where)
        for j, card in enumerate(cards):
            if not isinstance(card, str) or not CARD_HASH.fullmatch(card):
                raise MessageError(f"{where}cards[{j}]", "expected a card hash (64 hex digits)")
        strong = d.get("strong_cards", [])
        if not isinstance(strong, list) or not set(strong) <= set(cards):
            raise MessageError(where + "strong_cards", "expected a list of the driver's cards")
    for i, r in enumerate(_list(bookings, "reservations", "bookings.")):
        where = f"bookings.reservations[{i}]."
        _str(r, "id", where)
        if _str(r, "driver_id", where) not in drivers:
            raise MessageError(
                where + "driver_id", f"names no driver of this snapshot: {r['driver_id']!r}"
            )
        if _time(r, "end", where) <= _time(r, "start", where):
            raise MessageError(where + "end", "must be after start")
    return bookings


@dataclass(frozen=True)
class Snapshot:
    """Everything one car needs to decide taps for the coming days (S-SYNC-1). A car applies a
    snapshot only if its `bookings.version` is newer than the one it holds."""

    car_id: str
    issued_at: float
    bookings: dict[str, Any]

    KIND = "snapshot"

    @property
    def version(self) -> int:
        return int(self.bookings["version"])

    def to_body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "car_id": self.car_id,
            "issued_at": self.issued_at,
            "bookings": self.bookings,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Snapshot:
        _version(body)
        car_id = _car(body)
        return cls(car_id, _time(body, "issued_at"), check_bookings(_get(body, "bookings")))


@dataclass(frozen=True)
class Command:
    """A remote operation (S-SYNC-3): applied once (by `id`), only before `expires_at`."""

    id: str
    car_id: str
    name: str
    issued_at: float
    expires_at: float
    args: dict[str, Any] = field(default_factory=dict)

    KIND = "command"

    @classmethod
    def new(cls, car_id: str, name: str, now: float, ttl: float, **args: Any) -> Command:
        return cls(uuid.uuid4().hex, car_id, name, now, now + ttl, dict(args))

    def to_body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "id": self.id,
            "car_id": self.car_id,
            "name": self.name,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "args": self.args,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Command:
        _version(body)
        name = _get(body, "name")
        if name not in COMMANDS:
            raise MessageError("name", f"expected one of {COMMANDS}, got {name!r}")
        issued, expires = _time(body, "issued_at"), _time(body, "expires_at")
        if expires <= issued:
            raise MessageError("expires_at", "must be after issued_at")
        args = _object(body, "args")
        check_args(name, args)
        return cls(_str(body, "id"), _car(body), name, issued, expires, args)


def check_args(name: str, args: Mapping[str, Any]) -> None:
    """The arguments REQUIRED_ARGS names for command `name`, each of its type."""
    for arg, kind in REQUIRED_ARGS.get(name, {}).items():
        if arg not in args:
            raise MessageError(f"args.{arg}", f"required by {name!r}")
        if type(args[arg]) is not kind:
            raise MessageError(
                f"args.{arg}", f"{name!r} expects {kind.__name__}, got {args[arg]!r}"
            )


# ---- car → cloud -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One thing the car did (S-SYNC-2), from its outbox: unique `id`, per-car `seq` (1, 2, …)."""

    id: str
    car_id: str
    seq: int
    type: str
    at: float
    data: dict[str, Any]

    def to_body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "id": self.id,
            "car_id": self.car_id,
            "seq": self.seq,
            "type": self.type,
            "at": self.at,
            "data": self.data,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Event:
        _version(body)
        kind = _str(body, "type", pattern=re.compile(r"[a-z][a-z_]{0,63}"))
        return cls(
            _str(body, "id"),
            _car(body),
            _int(body, "seq", minimum=1),
            kind,
            _time(body, "at"),
            _object(body, "data"),
        )


@dataclass(frozen=True)
class State:
    """What the car looks like now (S-SYNC-4), retained: trip state, inputs, outputs, position,
    fuel, odometer, firmware; `fields` holds them as the car reports them."""

    car_id: str
    at: float
    fields: dict[str, Any]

    def to_body(self) -> dict[str, Any]:
        return {"v": VERSION, "car_id": self.car_id, "at": self.at, "state": self.fields}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> State:
        _version(body)
        return cls(_car(body), _time(body, "at"), _object(body, "state"))


@dataclass(frozen=True)
class Online:
    """Retained presence: the car publishes online on connect; its last will says offline."""

    car_id: str
    online: bool
    at: float | None = None  # a last will is written at connect time: no meaningful time

    def to_body(self) -> dict[str, Any]:
        return {"v": VERSION, "car_id": self.car_id, "online": self.online, "at": self.at}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Online:
        _version(body)
        online = _get(body, "online")
        if not isinstance(online, bool):
            raise MessageError("online", f"expected true or false, got {online!r}")
        at = None if body.get("at") is None else _time(body, "at")
        return cls(_car(body), online, at)


def _car(body: Mapping[str, Any]) -> str:
    try:
        return check_car_id(_get(body, "car_id"))
    except ValueError as exc:
        if isinstance(exc, MessageError):
            raise
        raise MessageError("car_id", str(exc).removeprefix("car_id: ")) from None

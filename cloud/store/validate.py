"""The forms of the values the store accepts; each refusal names the field and what was wrong."""

from __future__ import annotations

import datetime as dt
import math
import re

from cloud.store.errors import InvalidValue

MEMBER_ID = re.compile(r"[A-Z0-9]{8}")
DRIVER_ID = re.compile(r"[A-Z0-9]{8}[0-9]{3}")
# Car and station IDs appear in MQTT topics (kagi/v1/cars/{car_id}/…): no / + # or spaces.
NAME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CARD_HASH = re.compile(r"[0-9a-f]{64}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def member_id(value: object, field: str = "member_id") -> str:
    if not isinstance(value, str) or not MEMBER_ID.fullmatch(value):
        raise InvalidValue(
            field, f"a member ID is 8 capital letters or digits (e.g. XXY00001), got {value!r}"
        )
    return value


def driver_id(value: object, field: str = "driver_id") -> str:
    if not isinstance(value, str) or not DRIVER_ID.fullmatch(value):
        raise InvalidValue(
            field,
            "a driver ID is 11 characters: the member ID and 3 digits (e.g. XXY00001001), "
            f"got {value!r}",
        )
    return value


def name_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not NAME_ID.fullmatch(value):
        raise InvalidValue(
            field,
            "expected 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), "
            f"got {value!r}",
        )
    return value


def card_hash(value: object, field: str = "card_hash") -> str:
    if not isinstance(value, str) or not CARD_HASH.fullmatch(value):
        raise InvalidValue(field, f"a card hash is 64 lower-case hex digits, got {value!r}")
    return value


def text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(field, f"must be a non-empty text, got {value!r}")
    return value.strip()


def email(value: object, field: str = "email") -> str:
    if not isinstance(value, str) or not EMAIL.fullmatch(value.strip()):
        raise InvalidValue(field, f"not an e-mail address: {value!r}")
    return value.strip()


def instant(value: object, field: str) -> dt.datetime:
    """An aware datetime, returned in UTC; a naive one is refused (whose local time is it?)."""
    if not isinstance(value, dt.datetime):
        raise InvalidValue(field, f"expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValue(field, f"a time must carry its time zone, got naive {value.isoformat()}")
    return value.astimezone(dt.UTC)


def day(value: object, field: str) -> dt.date:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise InvalidValue(field, f"expected a date, got {value!r}")
    return value


def count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValue(field, f"expected a whole number >= 0, got {value!r}")
    return value


def number(value: object, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidValue(field, f"expected a number, got {value!r}")
    if not low <= value <= high:
        raise InvalidValue(field, f"must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def optional_number(value: object, field: str, low: float, high: float) -> float | None:
    return None if value is None else number(value, field, low, high)

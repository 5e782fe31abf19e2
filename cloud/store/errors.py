"""What the store refuses, as types the HTTP API maps to status codes.

Every error leaves the database as it was: the write it refused is rolled back whole.
`Conflict.reason` is a stable, machine-readable code; the message is for people.
"""

from __future__ import annotations

# Conflict reasons (the API answers 409 with these codes).
CAR_BUFFER = "car_buffer"  # C-CAR-1: within the buffer of another live reservation of the car
DRIVER_OVERLAP = "driver_overlap"  # C-DRV-1: the driver already has a reservation at that time
MEMBER_LIMIT = "member_limit"  # the member already has the most open reservations allowed
STALE = "stale"  # the reservation changed since the caller read it (expected_version)
STATUS = "status"  # the reservation's status does not allow this (e.g. changing a cancelled one)
DUPLICATE = "duplicate"  # the ID (member, driver, card, car, station) is taken
REVOKED = "revoked"  # a revoked card cannot be registered again (U-CARD-4)


class StoreError(Exception):
    """The store cannot do what was asked; the message says what and why. Nothing was changed."""


class SchemaError(StoreError):
    """The database's schema is not the one this code reads (newer, older, or not kagi's)."""


class InvalidValue(StoreError, ValueError):
    """A value of the wrong form (malformed ID, naive time, end before start); `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(StoreError, LookupError):
    """No such member, driver, card, station, car or reservation; `kind` and `key` say which."""

    def __init__(self, kind: str, key: str, hint: str = "") -> None:
        super().__init__(f"{kind} {key!r} does not exist" + (f" ({hint})" if hint else ""))
        self.kind = kind
        self.key = key


class Conflict(StoreError):
    """The write would break an invariant; `reason` is one of the codes above.

    `other` is the reservation it collided with when known (not in the message: it may belong
    to another member).
    """

    def __init__(self, reason: str, message: str, other: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.other = other

"""A car's booking snapshot (SPEC S-SYNC-1) and the cloud's signing key (X-SEC-1).

The snapshot holds what the car needs to decide taps for the coming days: its live reservations
in a window around now, their drivers with the licence expiry, and each driver's active card
hashes (and which of them are strong) — exactly the car's `bookings` format
(`protocol.messages.check_bookings`). It is signed with the cloud's Ed25519 key, made once and
kept in the store's settings so every worker signs with the same key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.store import Store
from cloud.store.sync import SnapshotRows
from protocol import messages, signing

SIGNING_KEY = "sync.signing_key"  # the setting holding the cloud's Ed25519 private key (hex)
# A driver with no licence on file gets a day long past: the car refuses them (U-LIC-1), as the
# booking rules do (C-LIC-1).
NO_LICENCE = "0001-01-01"


@dataclass(frozen=True)
class Window:
    """Which reservations a snapshot carries: those ending after now − `back` and starting
    before now + `ahead` (and every trip in use, however late)."""

    back: dt.timedelta = dt.timedelta(days=1)
    ahead: dt.timedelta = dt.timedelta(days=14)


def signing_key(store: Store) -> Ed25519PrivateKey:
    """The cloud's signing key, made the first time it is asked for."""
    text = store.setting_once(
        SIGNING_KEY, lambda: signing.private_key_hex(signing.new_private_key())
    )
    return signing.private_key_from_hex(text)


def public_key(store: Store) -> str:
    """The public key (64 hex digits) every car is provisioned with."""
    return signing.public_key_hex(signing_key(store))


def content(rows: SnapshotRows) -> dict[str, Any]:
    """The snapshot's bookings without their version."""
    cards: dict[str, list[str]] = {}
    strong: dict[str, list[str]] = {}
    for card in rows.cards:
        cards.setdefault(card.driver_id, []).append(card.card_hash)
        if card.strong:
            strong.setdefault(card.driver_id, []).append(card.card_hash)
    return {
        "reservations": [
            {
                "id": r.reservation_id,
                "driver_id": r.driver_id,
                "start": r.start.timestamp(),
                "end": r.end.timestamp(),
            }
            for r in rows.reservations
        ],
        "drivers": [
            {
                "id": d.driver_id,
                "licence_expiry": (
                    NO_LICENCE if d.licence_expiry is None else d.licence_expiry.isoformat()
                ),
                "cards": sorted(cards.get(d.driver_id, [])),
                "strong_cards": sorted(strong.get(d.driver_id, [])),
            }
            for d in rows.drivers
        ],
    }


def digest(bookings: dict[str, Any]) -> str:
    return hashlib.sha256(signing.canonical(bookings)).hexdigest()


def next_version(held: int, now: dt.datetime) -> int:
    """A version newer than `held` and at least the time in milliseconds: a database restored
    from a backup never sends versions the cars already passed (they would ignore them)."""
    return max(held + 1, int(now.timestamp() * 1000))


def signed_snapshot(
    key: Ed25519PrivateKey, car_id: str, version: int, bookings: dict[str, Any], now: dt.datetime
) -> bytes:
    """The payload for `kagi/v1/cars/{car}/reservations`; refuses (MessageError) a snapshot the
    car would refuse."""
    body = messages.Snapshot(car_id, now.timestamp(), {"version": version, **bookings}).to_body()
    messages.Snapshot.from_body(body)
    return messages.encode(signing.sign(key, messages.Snapshot.KIND, body))

"""Card identity: a FeliCa IDm is stored and sent only as a keyed hash.

One function serves the car, the cloud and the tools, so the three can never disagree on how a
card is named. The hash is HMAC-SHA256 of the 8-byte IDm under the fleet key.
"""

from __future__ import annotations

import hashlib
import hmac

IDM_LENGTH = 8


def parse_idm(text: str) -> bytes:
    """An IDm written as 16 hex digits (spaces and colons allowed), as a technician types it."""
    cleaned = text.replace(" ", "").replace(":", "")
    try:
        idm = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"IDm must be hex digits, got {text!r}") from None
    if len(idm) != IDM_LENGTH:
        raise ValueError(f"IDm must be {IDM_LENGTH} bytes (16 hex digits), got {len(idm)}")
    return idm


def card_hash(fleet_key: bytes, idm: bytes) -> str:
    """The name of a card everywhere outside the reader: hex HMAC-SHA256(fleet_key, IDm)."""
    if len(idm) != IDM_LENGTH:
        raise ValueError(f"IDm must be {IDM_LENGTH} bytes, got {len(idm)}")
    if not fleet_key:
        raise ValueError("the fleet key is empty")
    return hmac.new(fleet_key, idm, hashlib.sha256).hexdigest()

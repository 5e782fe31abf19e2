"""Card identity: a FeliCa IDm is stored and sent only as a keyed hash.

One function serves the car, the cloud and the tools, so the three can never disagree on how a
card is named. The hash is HMAC-SHA256 of the 8-byte IDm under the fleet key.

A strong card (FeliCa Lite-S) also holds a card key of its own, derived here from the fleet's card
master key and the IDm, so the reader that checks it and the tool that provisions it agree.
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


LITE_S_KEY_LENGTH = 16  # a FeliCa Lite-S card key: two-key triple DES


def lite_s_card_key(master_key: bytes, idm: bytes) -> bytes:
    """The card key of one FeliCa Lite-S card, derived from the fleet's master key and its IDm.

    Each card gets its own key, so a key read out of one card (or a leaked provisioning log)
    opens no other card. The key is the first 16 bytes of HMAC-SHA256(master key, label || IDm).
    """
    if len(idm) != IDM_LENGTH:
        raise ValueError(f"IDm must be {IDM_LENGTH} bytes, got {len(idm)}")
    if len(master_key) < LITE_S_KEY_LENGTH:
        raise ValueError(
            f"the card master key must be at least {LITE_S_KEY_LENGTH} bytes, got {len(master_key)}"
        )
    digest = hmac.new(master_key, b"kagi felica lite-s card key\x00" + idm, hashlib.sha256)
    return digest.digest()[:LITE_S_KEY_LENGTH]

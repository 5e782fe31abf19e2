"""Ed25519 signatures on what the cloud sends a car (SPEC X-SEC-1), with `cryptography`.

A signed message is a JSON object `{"kind": ..., "body": {...}, "sig": "<base64>"}`; the
signature covers the canonical JSON of `{"kind", "body"}` (sorted keys, no spaces, UTF-8), so a
body moved to another kind of message, or altered in any byte, does not verify. The cloud holds
the private key; each car holds the public key (64 hex digits) from provisioning.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SignatureError(ValueError):
    """The message is not signed by the key we trust, or is not a signed message at all."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_hex(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return raw.hex()


def private_key_from_hex(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_key_bytes(text, "private key"))


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_key_bytes(text, "public key"))


def _key_bytes(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{what}: expected 64 hex digits, got {text!r}") from None
    if len(raw) != 32:
        raise ValueError(f"{what}: expected 32 bytes (64 hex digits), got {len(raw)}")
    return raw


def sign(key: Ed25519PrivateKey, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    signature = key.sign(canonical({"kind": kind, "body": body}))
    return {"kind": kind, "body": body, "sig": base64.b64encode(signature).decode()}


def verify(key: Ed25519PublicKey, message: Any, kind: str) -> dict[str, Any]:
    """The body of `message` if it is a `kind` message signed by `key`; else SignatureError."""
    if not isinstance(message, dict) or set(message) != {"kind", "body", "sig"}:
        raise SignatureError("not a signed message: expected exactly kind, body and sig")
    if message["kind"] != kind:
        raise SignatureError(f"kind: expected {kind!r}, got {message['kind']!r}")
    body, sig = message["body"], message["sig"]
    if not isinstance(body, dict) or not isinstance(sig, str):
        raise SignatureError("body must be an object and sig a base64 string")
    try:
        signature = base64.b64decode(sig, validate=True)
        key.verify(signature, canonical({"kind": kind, "body": body}))
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureError("sig: the signature does not verify with the cloud's key") from None
    return body

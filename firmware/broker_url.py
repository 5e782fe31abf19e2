"""The car's broker address: `mqtt://CAR_ID:PASSWORD@HOST:PORT` or `mqtts://…`, parsed and checked.

Plain standard library, so the configuration checks it without loading the MQTT client."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

SCHEMES = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerUrl:
    """`mqtt://CAR_ID:PASSWORD@HOST:PORT` or `mqtts://…` (TLS), parsed."""

    tls: bool
    host: str
    port: int
    username: str
    password: str = field(repr=False)

    def redacted(self) -> str:
        """The URL without its password, for logs and the status view."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{self.username}:***@{host}:{self.port}"


def parse_cloud_url(url: str, car_id: str) -> BrokerUrl:
    """The broker's URL, or ValueError saying what is wrong with it (never echoing a password).

    The user name is the car ID (the broker's ACL gives user `%u` only `kagi/v1/cars/%u/#`); it
    may be left out. A password with special characters is percent-encoded."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(
            f"not a broker URL ({exc}); expected mqtt://{car_id}:PASSWORD@HOST:PORT"
        ) from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"expected mqtt://{car_id}:PASSWORD@HOST:PORT or mqtts://… (TLS), "
            f"got a {parts.scheme or 'schemeless'} URL"
        )
    if not parts.hostname:
        raise ValueError(f"no broker host; expected {parts.scheme}://{car_id}:PASSWORD@HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a broker URL has no path, query or fragment")
    user = urllib.parse.unquote(parts.username) if parts.username else car_id
    if user != car_id:
        raise ValueError(
            f"the user name must be the car ID {car_id!r} (the broker lets user X use only "
            f"kagi/v1/cars/X/#), got {user!r}"
        )
    password = urllib.parse.unquote(parts.password) if parts.password else ""
    return BrokerUrl(
        parts.scheme == "mqtts",
        parts.hostname,
        port or SCHEMES[parts.scheme],
        user,
        password,
    )

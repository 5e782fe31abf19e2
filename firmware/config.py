"""The car unit's configuration: every duration and window of SPEC §1, loaded from TOML.

The defaults are the operator's guide's. A bad file is refused with the key and the reason
(SPEC X-SEC-3): unknown keys, wrong types and malformed durations are all errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.broker_url import parse_cloud_url
from protocol.release import FLEET_TABLES

FLEET_FILE = "fleet-config.json"  # beside unit.toml: the fleet configuration the car applied


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the key and the reason."""


def duration(default: str) -> Any:
    """A duration field: written as "14m", "90s", "1h30m" or a number of seconds."""
    return field(default=parse_duration(default, "default"), metadata={"duration": True})


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: object, key: str) -> int:
    """Seconds in a duration; raises ConfigError naming `key` when it is not one."""
    if isinstance(value, bool):
        raise ConfigError(f'{key}: expected a duration such as "10m" or "60s", got {value!r}')
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{key}: a duration cannot be negative, got {value}")
        return value
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match and any(match.groups()):
            h, m, s = (int(g) if g else 0 for g in match.groups())
            return h * 3600 + m * 60 + s
    raise ConfigError(f'{key}: expected a duration such as "10m" or "60s", got {value!r}')


@dataclass(frozen=True)
class Timing:
    """Every duration the trip core uses (guide §6, §10)."""

    start_early: int = duration("14m")  # U-START-1: a trip may start this long before its start
    reader_window: int = duration("45m")  # U-START-2: the reader blinks green this long
    door_timer: int = duration("1m")  # U-SEC-1
    key_timer: int = duration("10m")  # U-SEC-2
    return_key_timer: int = duration("10m")  # U-SEC-3
    security_warning: int = duration("1m")  # "security lock imminent" this long before a key lock
    engine_stop_grace: int = duration("1m")  # a security lock held by a running engine waits this
    forgotten_window: int = duration("10m")  # U-FGT-1
    registration_timeout: int = duration("60s")  # U-CARD-3
    reminder_before_end: int = duration("10m")  # U-USE-2
    reminder_interval: int = duration("5m")  # U-USE-2: repeats until the end time


CHECK_MODES = ("off", "warn", "block")


@dataclass(frozen=True)
class EndChecks:
    """How the optional end checks of U-END-1 count: off, warn (voice only) or block."""

    lights: str = "warn"
    geofence: str = "warn"


@dataclass(frozen=True)
class Station:
    """The car's own parking space; the geofence check is skipped when it has no position."""

    name: str = ""
    lat: float | None = None
    lon: float | None = None
    radius_m: float = 50.0


@dataclass(frozen=True)
class Feedback:
    """Hazard-lamp blink counts of U-FB-2."""

    hazard_start: int = 2
    hazard_end: int = 1
    hazard_refused: int = 5


@dataclass(frozen=True)
class Cards:
    """Which cards open the car. A card registered as strong (FeliCa Lite-S) always needs its
    mutual authentication; `strong_required` makes every card need it (plain FeliCa refused)."""

    strong_required: bool = False


@dataclass(frozen=True)
class TripConfig:
    """What the trip core needs: the timings, the checks, the station and the feedback."""

    timing: Timing = field(default_factory=Timing)
    end_checks: EndChecks = field(default_factory=EndChecks)
    station: Station = field(default_factory=Station)
    feedback: Feedback = field(default_factory=Feedback)
    cards: Cards = field(default_factory=Cards)
    timezone: str = "Asia/Tokyo"  # the day a driving licence expires is a local day


@dataclass(frozen=True)
class UnitConfig:
    """One car unit: its identity, its files and the URLs of its adapters."""

    car_id: str
    card_key: str  # the fleet key for card hashes, hex
    card_master_key: str = ""  # hex; each FeliCa Lite-S card's key derives from it ("": none)
    database: str = "kagi-unit.db"
    reader: str = "sim:"
    board: str = "sim:"
    cloud: str = "none:"  # or mqtt://CAR_ID:PASSWORD@HOST:PORT, mqtts://… (TLS)
    cloud_public_key: str = ""  # the cloud's Ed25519 public key, 64 hex digits (mqtt clouds)
    cloud_ca: str = ""  # the operator's CA certificate (PEM) for mqtts ("": the system's)
    cloud_max_skew: int = duration("5m")  # a signed message further off the unit's clock: report
    cloud_reconnect_max: int = duration("30s")  # the backoff between attempts grows up to this
    # an event leaves the outbox this long after the broker's PUBACK, if the connection held: a
    # broker that crashed sooner may not have saved it (at least its autosave interval)
    cloud_hold: int = duration("5s")
    clock: str = "system"  # or "manual": time moves only when the control socket says so
    # where a manual clock starts when the database holds no time yet (epoch s; 0: now)
    clock_start: float = 0.0
    control: str = ""  # a unix socket path for the simulated inputs and the status view
    # O-OTA: the cloud's web address, which serves /updates/ (http(s)://HOST:PORT; "": this unit
    # takes no updates),
    # the operator's root.json it trusts, how long before a reservation's card window no
    # install starts, and how long a new version has to pass its start-up self-check
    updates: str = ""
    updates_root: str = ""
    update_lead: int = duration("30m")
    update_deadline: int = duration("5m")
    # the board's USB console (its MicroPython REPL): the unit sends a release's board firmware
    # on through it ("": a technician flashes the board with `kagi board flash`)
    board_console: str = ""
    trip: TripConfig = field(default_factory=TripConfig)
    # not keys of the file: the fleet configuration applied (O-OTA-4, FLEET_FILE), and the
    # file's own trip tables the next one applies over
    fleet_config_version: int = 0
    raw_trip: dict[str, Any] = field(default_factory=dict, compare=False)
    folder: str = ""  # where the file is (and FLEET_FILE beside it)

    @property
    def card_key_bytes(self) -> bytes:
        return bytes.fromhex(self.card_key)

    @property
    def card_master_key_bytes(self) -> bytes | None:
        return bytes.fromhex(self.card_master_key) if self.card_master_key else None


def _check(config: TripConfig | UnitConfig) -> None:
    ec = config.end_checks if isinstance(config, TripConfig) else config.trip.end_checks
    for name in ("lights", "geofence"):
        mode = getattr(ec, name)
        if mode not in CHECK_MODES:
            raise ConfigError(f"end_checks.{name}: expected one of {CHECK_MODES}, got {mode!r}")
    trip = config if isinstance(config, TripConfig) else config.trip
    try:
        zoneinfo.ZoneInfo(trip.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone: unknown time zone {trip.timezone!r}") from None
    if trip.timing.reader_window == 0:
        raise ConfigError("timing.reader_window: must be longer than 0")
    if isinstance(config, UnitConfig):
        if not config.car_id:
            raise ConfigError("unit.car_id: must not be empty")
        try:
            key = bytes.fromhex(config.card_key)
        except ValueError:
            raise ConfigError("unit.card_key: expected hex digits") from None
        if len(key) < 16:
            raise ConfigError("unit.card_key: must be at least 16 bytes (32 hex digits)")
        if config.card_master_key:
            try:
                master = bytes.fromhex(config.card_master_key)
            except ValueError:
                raise ConfigError("unit.card_master_key: expected hex digits") from None
            if len(master) < 16:
                raise ConfigError("unit.card_master_key: must be at least 16 bytes (32 hex digits)")
        elif trip.cards.strong_required:
            raise ConfigError(
                "cards.strong_required: strong cards cannot be checked without "
                "unit.card_master_key (the key their card keys derive from)"
            )
        if config.clock not in ("system", "manual"):
            raise ConfigError(f"unit.clock: expected 'system' or 'manual', got {config.clock!r}")
        if config.clock_start < 0:
            raise ConfigError(f"unit.clock_start: must not be negative, got {config.clock_start}")
        if config.clock_start and config.clock != "manual":
            raise ConfigError("unit.clock_start: only a manual clock can start elsewhere")
        _check_cloud(config)


def _check_cloud(config: UnitConfig) -> None:
    """The cloud link's keys: a URL this build has an adapter for, and what it needs."""
    scheme = config.cloud.split(":", 1)[0]
    if config.cloud.startswith("none:"):
        return
    if scheme not in ("mqtt", "mqtts"):
        raise ConfigError(
            f"unit.cloud: no cloud adapter for {scheme or config.cloud!r} URLs "
            "(this build knows: none:, mqtt://CAR_ID:PASSWORD@HOST:PORT, mqtts://…)"
        )
    # the protocol's signing (cryptography) loads only for a unit that uses it
    from protocol.signing import public_key_from_hex
    from protocol.topics import check_car_id

    try:
        check_car_id(config.car_id)
    except ValueError as exc:
        raise ConfigError(f"unit.{exc} (it names the car's MQTT topics)") from None
    try:
        parse_cloud_url(config.cloud, config.car_id)
    except ValueError as exc:
        raise ConfigError(f"unit.cloud: {exc}") from None
    if not config.cloud_public_key:
        raise ConfigError(
            "unit.cloud_public_key: required with an mqtt cloud: the cloud's Ed25519 public key "
            "(64 hex digits), without which no booking or command can be trusted"
        )
    try:
        public_key_from_hex(config.cloud_public_key)
    except ValueError as exc:
        raise ConfigError(f"unit.cloud_public_key: {exc}") from None
    if config.cloud_ca and scheme != "mqtts":
        raise ConfigError("unit.cloud_ca: a CA certificate is only used with mqtts:// (TLS)")


def _build(cls: type[Any], table: object, prefix: str) -> Any:
    """A frozen dataclass from a TOML table, refusing unknown keys and wrong types."""
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix or 'file'}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key")
    values: dict[str, Any] = {}
    for name, value in table.items():
        f = fields[name]
        key = f"{prefix}{name}"
        hint = hints[name]
        if f.metadata.get("duration"):
            values[name] = parse_duration(value, key)
        elif dataclasses.is_dataclass(hint):
            values[name] = _build(typing.cast(type[Any], hint), value, f"{key}.")
        else:
            values[name] = _coerce(hint, value, key)
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        missing = str(exc).split("argument")[-1].strip(": '")
        raise ConfigError(f"{prefix}{missing}: missing required key") from None


def _coerce(hint: Any, value: object, key: str) -> object:
    allowed: tuple[Any, ...] = (
        typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    )
    for t in allowed:
        if t is type(None):
            continue
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t in (str, bool) and isinstance(value, t):
            return value
    names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed if t is not type(None))
    raise ConfigError(f"{key}: expected {names}, got {value!r}")


def trip_config_from_dict(data: dict[str, Any]) -> TripConfig:
    config: TripConfig = _build(TripConfig, data, "")
    _check(config)
    return config


def load_unit_config(path: str | Path) -> UnitConfig:
    """A unit's configuration file: a `[unit]` table and the trip tables beside it.

    Relative paths inside (the database, the control socket) are taken from the file's folder.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unit = dict(raw.pop("unit", {}) or {})
    for own in ("trip", "folder", "fleet_config_version", "raw_trip"):
        if own in unit:
            raise ConfigError(f"unit.{own}: unknown key")
    fleet = _fleet_file(path.resolve().parent / FLEET_FILE)
    unit["trip"] = with_fleet(raw, fleet[1]) if fleet else raw
    try:
        config: UnitConfig = _build(UnitConfig, unit, "unit.")
    except ConfigError as exc:
        # trip tables sit at the top level of the file: name them as the file does
        raise ConfigError(str(exc).replace("unit.trip.", "")) from None
    _check(config)
    base = path.resolve().parent
    control = str(base / config.control) if config.control else ""
    ca = str(base / config.cloud_ca) if config.cloud_ca else ""
    if ca and not Path(ca).is_file():
        raise ConfigError(f"unit.cloud_ca: no such file: {ca}")
    root = str(base / config.updates_root) if config.updates_root else ""
    if config.updates:
        if not config.updates.startswith(("http://", "https://")):
            raise ConfigError(
                f"unit.updates: expected the cloud's http(s)://HOST:PORT, got {config.updates!r}"
            )
        if not root:
            raise ConfigError(
                "unit.updates_root: the operator's root.json is needed to verify updates"
            )
        if not Path(root).is_file():
            raise ConfigError(f"unit.updates_root: no such file: {root}")
    return dataclasses.replace(
        config, database=str(base / config.database), control=control, cloud_ca=ca,
        updates_root=root, fleet_config_version=fleet[0] if fleet else 0, raw_trip=raw,
        folder=str(base),
    )  # fmt: skip


def _fleet_file(path: Path) -> tuple[int, dict[str, Any]] | None:
    """The fleet configuration the car applied before (None: none yet)."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a fleet configuration: {exc}") from None
    try:
        return check_fleet_config(body)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# ---- the fleet configuration (O-OTA-4) ----------------------------------------------------------


def check_fleet_config(body: object) -> tuple[int, dict[str, Any]]:
    """A fleet configuration as the operator signs it: `{"version": N, <FLEET_TABLES>…}`; its
    version and tables, or ConfigError naming what is wrong (as a car would refuse it)."""
    if not isinstance(body, dict):
        raise ConfigError("fleet configuration: expected an object")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"version: expected a whole number from 1, got {version!r}")
    tables = {k: v for k, v in body.items() if k != "version"}
    stray = sorted(set(tables) - set(FLEET_TABLES))
    if stray:
        raise ConfigError(f"{stray[0]}: not set by the fleet configuration "
                          f"(it sets {', '.join(FLEET_TABLES)})")  # fmt: skip
    _check(_build(TripConfig, tables, ""))
    return version, tables


def with_fleet(trip: dict[str, Any], tables: dict[str, Any]) -> dict[str, Any]:
    """The car's trip tables with the fleet configuration's over them, key by key."""
    merged = dict(trip)
    for name, table in tables.items():
        merged[name] = {**(merged.get(name) or {}), **table}
    return merged


def apply_fleet(config: UnitConfig, tables: dict[str, Any], raw_trip: dict[str, Any]) -> TripConfig:
    """The trip configuration the car runs with `tables` applied over its own file's."""
    trip: TripConfig = _build(TripConfig, with_fleet(raw_trip, tables), "")
    _check(dataclasses.replace(config, trip=trip))
    return trip

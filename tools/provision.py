"""`kagi unit provision`: write a car unit's configuration, check each part it names, register
the car in the cloud.

    kagi unit provision --config /etc/kagi/unit.toml --car-id car-001 \\
        --cloud-db postgresql://kagi@db/kagi --station tokai-1 \\
        --broker mqtts://broker.example.jp:8883 --board /dev/ttyUSB0 --reader usb:054c:06c1

With `--cloud-db` the cloud's own database gives what the car must hold — the fleet key for card
hashes, the station's name and geofence, the cloud's public key — and the car is registered there
(at its station) with a broker account of its own, whose password goes into the broker URL
(shown nowhere else). Without it every value is given: `--card-key`, `--station-name`, `--lat`,
`--lon`, `--cloud-public-key`, `--broker-password`.

The file is written only once the unit's own loader (`firmware.config.load_unit_config`) accepts
it, readable by its owner only (it holds the broker password and the card key); an existing file
is replaced only with `--force`. Then each part the configuration names is checked as the unit
would use it: the board says hello on its link, the reader is there, the broker takes the car's
login. `--check-only` runs the checks on an existing file. Exit status: 0 all good, 1 a check
failed (the file is written all the same: fix the part and run `--check-only`), 2 nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.options import MissingOption, debug_option, env_option


class ProvisionError(Exception):
    """Bad input or a refused configuration: nothing was written; the message is one line."""


def add_commands(cmds: Any) -> None:
    p = cmds.add_parser(
        "provision",
        help="write a unit's configuration, check its board, reader and broker, register the car",
    )
    env_option(p, "--config", "KAGI_UNIT_CONFIG", "the configuration file to write")
    p.add_argument("--car-id", help="the car's ID (also its broker user name)")
    p.add_argument("--check-only", action="store_true", help="check an existing file; write none")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    env_option(
        p,
        "--timeout",
        "KAGI_TIMEOUT",
        "seconds each check waits for its part to answer",
        type=float,
        default=5.0,
    )
    cloud = p.add_argument_group("from the cloud (registers the car)")
    env_option(cloud, "--cloud-db", "KAGI_CLOUD_DB", "the cloud's database (SQLite path or URL)")
    cloud.add_argument("--station", help="the car's station ID in the cloud")
    env_option(
        cloud,
        "--accounts",
        "KAGI_BROKER_ACCOUNTS",
        "the fleet's broker password file (the car's account is made there)",
    )
    given = p.add_argument_group("given by hand (without --cloud-db)")
    given.add_argument("--card-key", help="the fleet key for card hashes, hex")
    given.add_argument("--station-name", help="the station's name")
    given.add_argument("--lat", type=float, help="the station's latitude")
    given.add_argument("--lon", type=float, help="the station's longitude")
    given.add_argument("--radius", type=float, help="the geofence's radius, metres (50)")
    given.add_argument("--cloud-public-key", help="the cloud's Ed25519 public key, 64 hex digits")
    given.add_argument("--broker-password", help="the car's broker password")
    unit = p.add_argument_group("the unit")
    unit.add_argument("--broker", help="the broker: mqtt://HOST:PORT or mqtts://HOST:PORT")
    unit.add_argument("--cloud-ca", help="the operator's CA certificate (PEM) for mqtts")
    env_option(
        unit, "--board", "KAGI_LINK", "the board's link port (sim: the fake)", default="sim:"
    )
    unit.add_argument("--reader", default="sim:", help="the reader: usb:054c:06c1, udp:HOST:PORT")
    unit.add_argument("--card-master-key", default="", help="FeliCa Lite-S card master key, hex")
    unit.add_argument("--database", default="unit.db", help="relative to the file (unit.db)")
    unit.add_argument("--control", default="control.sock", help="the control socket (monitor)")
    unit.add_argument("--updates", help="the cloud's web address the updates come from (O-OTA)")
    unit.add_argument("--updates-root", help="the operator's root.json that signs the updates")
    debug_option(p)
    p.set_defaults(func=_run)


# ---- the file ---------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def config_text(unit: dict[str, Any], station: dict[str, Any]) -> str:
    lines = ["# A car unit's configuration, written by `kagi unit provision`.", "", "[unit]"]
    lines += [f"{k} = {_toml(v)}" for k, v in unit.items() if v is not None]
    if station:
        lines += ["", "[station]"]
        lines += [f"{k} = {_toml(v)}" for k, v in station.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_config(path: Path, text: str, force: bool) -> Any:
    """Write `text` to `path` if the unit accepts it (owner-only), and return the config."""
    from firmware.config import ConfigError, load_unit_config

    if path.exists() and not force:
        raise ProvisionError(f"{path} exists: --force replaces it, --check-only checks it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            config = load_unit_config(tmp)
        except ConfigError as exc:
            raise ProvisionError(f"the unit would refuse it, nothing written: {exc}") from None
        os.replace(tmp, path)  # mkstemp made it 0600: the password stays the owner's
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return config


# ---- the cloud ---------------------------------------------------------------------------------


@dataclass
class CloudFacts:
    card_key: str = ""
    station: dict[str, Any] = field(default_factory=dict)
    public_key: str = ""
    password: str = ""
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # (result, part, text)


def from_cloud(db: str, car_id: str, station_id: str, accounts: str | None, broker: bool) -> Any:
    """Read the fleet key, the station and the public key; register the car and its account."""
    from cloud.store import NotFound, StoreError, open_store
    from cloud.store.fleet import FLEET_KEY

    facts = CloudFacts()
    try:
        with open_store(db, migrate=False) as store:
            key = store.get_setting(FLEET_KEY)
            if key is None:
                raise ProvisionError(f"{db} has no fleet key (`kagi cloud init`)")
            facts.card_key = key
            station = store.get_station(station_id)
            facts.station = {
                "name": station.name,
                "lat": station.lat,
                "lon": station.lon,
                "radius_m": station.radius_m,
            }
            try:
                car = store.get_car(car_id)
                if car.station_id != station_id:
                    raise ProvisionError(
                        f"car {car_id} is registered at station {car.station_id}, not {station_id}"
                    )
                facts.notes.append(("ok", "cloud", f"car {car_id} already registered"))
            except NotFound:
                store.add_car(car_id, station_id=station_id)
                facts.notes.append(
                    ("ok", "cloud", f"car {car_id} registered at station {station_id}")
                )
            try:
                from cloud.sync import public_key
            except ImportError:
                facts.notes.append(("skipped", "cloud", "this cloud has no signing key (sync)"))
            else:
                facts.public_key = public_key(store)
    except StoreError as exc:
        raise ProvisionError(f"cloud database {db}: {exc}") from None
    if broker:
        try:
            from cloud.accounts import DEFAULT_ACCOUNTS, Accounts
        except ImportError:
            facts.notes.append(("skipped", "broker", "this cloud keeps no broker accounts"))
        else:
            book = Accounts(accounts or DEFAULT_ACCOUNTS)
            existed = car_id in book
            facts.password = book.create(car_id)
            what = "reset (the old password no longer works)" if existed else "created"
            facts.notes.append(("ok", "broker", f"account {car_id} {what} in {book.path}"))
    return facts


# ---- the checks --------------------------------------------------------------------------------


Check = tuple[str, str, str]  # (ok | FAILED | skipped, part, what was seen)


def check_board(url: str, timeout: float = 5.0) -> Check:
    if url.startswith("sim:"):
        return ("skipped", "board", "sim: (the fake board)")
    from boards.common import link
    from firmware.board_link import MIN_FIRMWARE, firmware_version
    from tools.flash import FlashError, hello_on_link

    try:
        hello = hello_on_link(url, timeout=timeout)
    except FlashError as exc:
        return ("FAILED", "board", str(exc))
    said = (
        f"{hello.board} firmware {hello.firmware}, pin map {hello.pinmap}, "
        f"build {hello.build or '-'} on {url}"
    )
    if hello.version != link.VERSION or firmware_version(hello.firmware) < MIN_FIRMWARE:
        return ("FAILED", "board", f"the unit would refuse it: {said} (link {hello.version})")
    return ("ok", "board", said)


def check_reader(path: str) -> Check:
    if path.startswith("sim:"):
        return ("skipped", "reader", "sim: (the fake reader)")
    from firmware.reader_nfc import open_frontend

    try:
        clf = open_frontend(path)
    except (OSError, ValueError) as exc:
        return ("FAILED", "reader", f"no reader at {path}: {exc}")
    try:
        device = str(getattr(clf, "device", "") or path)
    finally:
        clf.close()
    return ("ok", "reader", device)


def check_broker(url: str, car_id: str, ca: str, timeout: float = 5.0) -> Check:
    if url.startswith("none:"):
        return ("skipped", "broker", "none: (no cloud)")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from firmware.broker_url import parse_cloud_url

    broker = parse_cloud_url(url, car_id)
    where = broker.redacted()
    # a client ID of its own: the car's would take over (and could wipe) the unit's session
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{car_id}-provision-check")
    client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(ca_certs=ca or None)
    answered = threading.Event()
    result: list[Any] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result.append(reason)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, keepalive=10)
    except OSError as exc:
        return ("FAILED", "broker", f"cannot reach {where}: {exc}")
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return ("FAILED", "broker", f"{where} did not answer the login in {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
    reason = result[0]
    if reason.is_failure:
        return ("FAILED", "broker", f"{where} refused the login of {car_id}: {reason}")
    return ("ok", "broker", f"{car_id} logged in to {where}")


def run_checks(config: Any, timeout: float = 5.0) -> list[Check]:
    return [
        check_board(config.board, timeout),
        check_reader(config.reader),
        check_broker(config.cloud, config.car_id, config.cloud_ca, timeout),
    ]


# ---- the command -------------------------------------------------------------------------------


def _broker_url(broker: str, car_id: str, password: str) -> str:
    parts = urllib.parse.urlsplit(broker)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ProvisionError(f"--broker {broker!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    if parts.username or parts.password:
        raise ProvisionError("--broker: give the URL without credentials (see --broker-password)")
    if not password:
        raise ProvisionError("--broker needs --broker-password, or --cloud-db to make the account")
    user = urllib.parse.quote(car_id, safe="")
    secret = urllib.parse.quote(password, safe="")
    return f"{parts.scheme}://{user}:{secret}@{parts.netloc}"


def provision(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    path = Path(args.config)
    notes: list[Check] = []
    if args.check_only:
        from firmware.config import ConfigError, load_unit_config

        try:
            config = load_unit_config(path)
        except ConfigError as exc:
            raise ProvisionError(str(exc)) from None
        notes.append(("ok", "config", f"{path}: the unit accepts it"))
    else:
        car_id = args.car_id
        if not car_id:
            raise MissingOption("--car-id is needed")
        if args.cloud_db:
            if not args.station:
                raise MissingOption("--station is needed with --cloud-db")
            if args.broker:  # its shape, before anything changes in the cloud
                _broker_url(args.broker, car_id, "checked")
            facts = from_cloud(
                args.cloud_db, car_id, args.station, args.accounts, bool(args.broker)
            )
            notes += facts.notes
        else:
            facts = CloudFacts()
            if args.station_name is not None or args.lat is not None:
                facts.station = {
                    "name": args.station_name or "",
                    "lat": args.lat,
                    "lon": args.lon,
                    "radius_m": args.radius,
                }
        card_key = args.card_key or facts.card_key
        if not card_key:
            raise MissingOption("--card-key is needed (or --cloud-db to read it)")
        cloud = "none:"
        if args.broker:
            cloud = _broker_url(args.broker, car_id, args.broker_password or facts.password)
        unit = {
            "car_id": car_id,
            "card_key": card_key,
            "card_master_key": args.card_master_key or None,
            "database": args.database,
            "control": args.control,
            "reader": args.reader,
            "board": args.board,
            "cloud": cloud,
            "cloud_public_key": args.cloud_public_key or facts.public_key or None,
            "cloud_ca": str(Path(args.cloud_ca).resolve()) if args.cloud_ca else None,
            "updates": args.updates or None,
            "updates_root": str(Path(args.updates_root).resolve()) if args.updates_root else None,
        }
        config = write_config(path, config_text(unit, facts.station), args.force)
        notes.append(("ok", "config", f"{path} written; the unit accepts it"))
    checks = [*notes, *run_checks(config, args.timeout)]
    for result, part, text in checks:
        say(f"  {result:<8} {part:<7} {text}")
    return 1 if any(result == "FAILED" for result, _, _ in checks) else 0


def _run(args: argparse.Namespace) -> int:
    try:
        return provision(args, print)
    except (ProvisionError, MissingOption, ValueError) as exc:
        if args.debug:
            raise
        print(f"kagi unit provision: {exc}", file=sys.stderr)
        return 2

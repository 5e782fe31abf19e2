"""`kagi cloud …`: serve the phone site's API; administer the cloud's database — members,
drivers, passwords, cards, stations, cars — load a demo fleet, and list what is there.

Every command takes `--db`: a SQLite file (default `kagi-cloud.db`, or $KAGI_CLOUD_DB) or a
`postgresql://` URL. `init` creates the database or brings its schema up to date; the others
need it to exist. Bad input is refused with a message naming what was wrong, and changes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
import os
import secrets
import sys
from collections.abc import Callable
from typing import Any

from cloud import accounts_cli, rollouts_cli, updates_cli
from cloud.auth import hash_password
from cloud.cli_errors import refusing
from cloud.demo import DEMO, DEMO_FLEET_KEY, DEMO_PASSWORD, STAFF_PASSWORD
from cloud.store import DEFAULT_DB, Store, StoreError, open_store
from cloud.store.fleet import FLEET_KEY
from cloud.sync import cli as sync_cli
from protocol.cards import card_hash, parse_idm

# What `kagi cloud list` shows: the store's method and the filters it takes (option → argument).
LISTS: dict[str, tuple[str, dict[str, str]]] = {
    "members": ("list_members", {}),
    "drivers": ("list_drivers", {"member": "member_id"}),
    "cards": ("list_cards", {"driver": "driver_id", "member": "member_id"}),
    "stations": ("list_stations", {}),
    "cars": ("list_cars", {"station": "station_id"}),
    "reservations": (
        "list_reservations",
        {"car": "car_id", "driver": "driver_id", "member": "member_id"},
    ),
    "events": ("car_events", {"car": "car_id", "type": "type"}),  # what the cars reported
    "car-status": ("list_car_status", {}),  # each car's last state and presence (S-SYNC-4)
    "staff": ("list_staff", {}),  # the console's accounts (O-ROLE-1)
    "audit": ("list_audit", {}),  # every staff action, newest first
    "alerts": ("list_alerts", {"car": "car_id"}),  # the console's open alerts (O-ALERT-1)
    "notifications": (
        "list_notifications",
        {"driver": "driver_id", "kind": "kind", "reservation": "reservation_id"},
    ),
}
FILTERS = sorted({name for _, takes in LISTS.values() for name in takes})


class UsageError(Exception):
    """A command-line value that is wrong before the database is even opened."""


_guarded = refusing("cloud", StoreError, UsageError)


def add_parser(rooms: Any) -> None:
    cloud = rooms.add_parser("cloud", help="the operator's cloud")
    cmds = cloud.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db = argparse.ArgumentParser(add_help=False)
    add_db_argument(db)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = cmds.add_parser(name, parents=[db], help=help, description=help)
        p.set_defaults(func=_guarded(func))
        return p

    p = command("init", _init, "create the database or bring its schema up to date")
    p.add_argument("--fleet-key", help="the fleet key for card hashes, hex (default: a new one)")

    command("fleet-key", _fleet_key, "print the fleet key (hex) to provision car units with")

    p = command("add-member", _add_member, "add a member (8-character ID, e.g. XXY00001)")
    p.add_argument("member_id")
    p.add_argument("--name", required=True)
    p.add_argument("--email")

    p = command("add-driver", _add_driver, "add a driver (the member ID + 3 digits)")
    p.add_argument("driver_id")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--licence-expiry", type=_date, help="last day the licence is valid, YYYY-MM-DD")
    p.add_argument("--admin", action="store_true", help="sees all of the member's reservations")

    p = command("add-card", _add_card, "register a driver's card (only its keyed hash is kept)")
    p.add_argument("driver_id")
    _card_arguments(p)
    p.add_argument("--strong", action="store_true", help="a provisioned FeliCa Lite-S card")

    p = command("revoke-card", _revoke_card, "revoke a card at once (lost or stolen)")
    _card_arguments(p)

    p = command("add-station", _add_station, "add a station with its geofence")
    p.add_argument("station_id")
    p.add_argument("--name", required=True)
    p.add_argument("--lat", type=float, required=True, help="latitude, degrees")
    p.add_argument("--lon", type=float, required=True, help="longitude, degrees")
    p.add_argument("--radius", type=float, default=50.0, help="geofence radius, metres (50)")

    p = command("add-car", _add_car, "add a car at a station")
    p.add_argument("car_id")
    p.add_argument("--station", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--kind", default="", help="the policy's car kind (default: base rules)")

    p = command("demo", _demo, "load a demo fleet (stations, cars, members, drivers, cards)")
    p.add_argument("--fleet-key", help=f"hex; for a new database default {DEMO_FLEET_KEY}")

    p = command(
        "set-password", _set_password, "set a driver's or member's password for the phone site"
    )
    p.add_argument("account_id", help="driver ID (11 characters) or member ID (8 characters)")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    p.add_argument(
        "--initial",
        action="store_true",
        help="an initial password (as sent by mail): the phone site makes them choose a new one",
    )

    p = command(
        "add-staff",
        _add_staff,
        "add a console account: operator, viewer, or technician for one car and a time window",
    )
    p.add_argument("staff_id")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=("operator", "viewer", "technician"))
    p.add_argument("--car", help="a technician's one car")
    p.add_argument("--from", dest="window_start", type=_instant, help="window start, ISO 8601")
    p.add_argument("--until", dest="window_end", type=_instant, help="window end, ISO 8601")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )

    p = command("set-staff-password", _set_staff_password, "set a console account's password")
    p.add_argument("staff_id")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )

    p = command(
        "serve",
        _serve,
        "serve the phone site's API (with no options: kagi-cloud.db here, 127.0.0.1:8080)",
    )
    p.add_argument("--host", default=os.environ.get("KAGI_CLOUD_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("KAGI_CLOUD_PORT", "8080")))
    p.add_argument("--policy", help="a booking policy TOML file (default: the guide's policy)")
    env = os.environ.get
    p.add_argument(
        "--broker",
        default=env("KAGI_CLOUD_BROKER"),
        help="the cars' broker, mqtt://HOST[:PORT] or mqtts://… (default: start an embedded one)",
    )
    p.add_argument("--broker-password", default=env("KAGI_CLOUD_BROKER_PASSWORD", ""))
    p.add_argument("--broker-ca", help="the operator's CA for an mqtts:// broker")
    p.add_argument("--broker-host", default=env("KAGI_CLOUD_BROKER_HOST", "127.0.0.1"))
    p.add_argument(
        "--broker-port",
        type=int,
        default=int(env("KAGI_CLOUD_BROKER_PORT", "1883")),
        help="the embedded broker's port (1883)",
    )
    p.add_argument(
        "--worker",
        default=env("KAGI_CLOUD_WORKER", "1"),
        help="this worker's stable name on the shared event stream",
    )
    p.add_argument(
        "--smtp", default=env("KAGI_CLOUD_SMTP"), help="smtp://HOST[:PORT] (default: mails wait)"
    )
    p.add_argument(
        "--alert-mail",
        default=env("KAGI_CLOUD_ALERT_MAIL"),
        help="the operator's address for the console's alerts (with --smtp)",
    )
    p.add_argument(
        "--offline-alert-minutes",
        type=float,
        default=float(env("KAGI_CLOUD_OFFLINE_ALERT_MINUTES", "10")),
        help="a car silent this long is an alert on the console (10)",
    )
    p.add_argument(
        "--updates",
        default=env("KAGI_CLOUD_UPDATES"),
        help="serve the update repository in this folder to the cars (kagi cloud updates-init)",
    )
    p.add_argument(  # hidden: the tests' cloud whose car does not answer (P-WEB-4)
        "--command-timeout", type=float, default=10.0, help=argparse.SUPPRESS
    )
    p.add_argument(
        "--clock",
        default=env("KAGI_CLOUD_CLOCK", "system"),
        help="system (default) or file:PATH, a file holding the time in seconds since the epoch "
        "(the HIL rig's car time; never in production)",
    )

    p = command(
        "list",
        _list,
        "list members, drivers, cards, stations, cars, reservations, the cars' events, "
        "their last state, or the mails",
    )
    p.add_argument("what", choices=LISTS)
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    for name in FILTERS:
        lists = [what for what, (_, takes) in LISTS.items() if name in takes]
        p.add_argument(f"--{name}", help=f"only this {name} ({', '.join(lists)})")

    p = command("edit-driver", _edit_driver, "change a driver's name, e-mail or licence expiry")
    p.add_argument("driver_id")
    p.add_argument("--name")
    p.add_argument("--email")
    p.add_argument("--licence-expiry", type=_date, help="last day the licence is valid, YYYY-MM-DD")
    accounts_cli.add_commands(cmds, [db])  # car-account, mosquitto-config
    updates_cli.add_commands(cmds)  # updates-init, publish-release, list-releases
    rollouts_cli.add_commands(cmds, [db])  # rollout start|list|show|pause|resume|abort
    sync_cli.add_commands(command)  # public-key (cloud/sync/cli.py)


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("KAGI_CLOUD_DB", DEFAULT_DB),
        help=f"SQLite file or postgresql:// URL (default $KAGI_CLOUD_DB or {DEFAULT_DB})",
    )


def _card_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--idm", help="the card's IDm, 16 hex digits (as `kagi card read` shows)")
    which.add_argument("--hash", help="the card's keyed hash, 64 hex digits")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _open(args: argparse.Namespace, migrate: bool = False) -> Store:
    return open_store(args.db, migrate=migrate)


def _fleet_key_of(store: Store) -> bytes:
    key = store.get_setting(FLEET_KEY)
    if key is None:
        raise UsageError(
            f"{store.url} has no fleet key; set one with `kagi cloud init --fleet-key HEX`"
        )
    return bytes.fromhex(key)


def _parse_key(text: str) -> str:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"--fleet-key: expected hex digits, got {text!r}") from None
    if len(key) < 16:
        raise UsageError(f"--fleet-key: must be at least 16 bytes (32 hex digits), got {len(key)}")
    return key.hex()


def _card(store: Store, args: argparse.Namespace) -> str:
    if args.hash is not None:
        return str(args.hash).lower()
    try:
        idm = parse_idm(args.idm)
    except ValueError as exc:
        raise UsageError(f"--idm: {exc}") from None
    return card_hash(_fleet_key_of(store), idm)


# ---- commands ------------------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    wanted = None if args.fleet_key is None else _parse_key(args.fleet_key)
    with _open(args, migrate=True) as store:
        have = store.get_setting(FLEET_KEY)
        if have is not None and wanted is not None and have != wanted:
            raise UsageError(
                "the database already has a different fleet key; changing it would orphan "
                "every registered card — the key was left as it is"
            )
        note = "fleet key kept"
        if have is None:
            store.set_setting(FLEET_KEY, wanted or secrets.token_hex(32))
            note = "fleet key " + ("set" if wanted else "created; `kagi cloud fleet-key` shows it")
        print(f"{store.url}: schema version {store.schema_version()}, {note}")
    return 0


def _fleet_key(args: argparse.Namespace) -> int:
    with _open(args) as store:
        print(_fleet_key_of(store).hex())
    return 0


def _add_member(args: argparse.Namespace) -> int:
    with _open(args) as store:
        m = store.add_member(args.member_id, name=args.name, email=args.email)
    print(f"member {m.member_id} added")
    return 0


def _add_driver(args: argparse.Namespace) -> int:
    with _open(args) as store:
        d = store.add_driver(
            args.driver_id,
            name=args.name,
            email=args.email,
            licence_expiry=args.licence_expiry,
            is_admin=args.admin,
        )
    print(
        f"driver {d.driver_id} of member {d.member_id} added" + (" (admin)" if d.is_admin else "")
    )
    return 0


def _edit_driver(args: argparse.Namespace) -> int:
    changes = {"name": args.name, "email": args.email, "licence_expiry": args.licence_expiry}
    if all(v is None for v in changes.values()):
        raise UsageError("give at least one of --name, --email, --licence-expiry")
    with _open(args) as store:
        driver = store.update_driver(args.driver_id, **changes)
    expiry = driver.licence_expiry
    print(f"driver {driver.driver_id} {driver.name}: {driver.email}, licence until {expiry}")
    return 0


def _add_card(args: argparse.Namespace) -> int:
    with _open(args) as store:
        card = store.add_card(args.driver_id, _card(store, args), strong=args.strong)
    print(f"card {card.card_hash} registered to driver {card.driver_id}")
    return 0


def _revoke_card(args: argparse.Namespace) -> int:
    with _open(args) as store:
        card = store.revoke_card(_card(store, args))
    assert card.revoked_at is not None
    print(
        f"card {card.card_hash} of driver {card.driver_id} revoked at {card.revoked_at:%F %T} UTC"
    )
    return 0


def _add_station(args: argparse.Namespace) -> int:
    with _open(args) as store:
        s = store.add_station(
            args.station_id, name=args.name, lat=args.lat, lon=args.lon, radius_m=args.radius
        )
    print(f"station {s.station_id} added ({s.lat}, {s.lon}, radius {s.radius_m:g} m)")
    return 0


def _add_car(args: argparse.Namespace) -> int:
    with _open(args) as store:
        car = store.add_car(args.car_id, station_id=args.station, name=args.name, kind=args.kind)
    print(f"car {car.car_id} added at station {car.station_id}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    wanted = None if args.fleet_key is None else _parse_key(args.fleet_key)
    with _open(args, migrate=True) as store:
        try:
            with store.batch():
                key = store.get_setting(FLEET_KEY)
                if key is None:
                    key = wanted or DEMO_FLEET_KEY
                    store.set_setting(FLEET_KEY, key)
                elif wanted is not None and wanted != key:
                    raise UsageError("--fleet-key differs from the database's fleet key")
                for s in DEMO["stations"]:
                    store.add_station(**s)
                for c in DEMO["cars"]:
                    store.add_car(**c)
                for m in DEMO["members"]:
                    store.add_member(**m)
                for d in DEMO["drivers"]:
                    expiry = dt.date.fromisoformat(d["licence_expiry"])
                    store.add_driver(**{**d, "licence_expiry": expiry})
                for card in DEMO["cards"]:
                    idm = parse_idm(card["idm"])
                    store.add_card(card["driver_id"], card_hash(bytes.fromhex(key), idm))
                secret = hash_password(DEMO_PASSWORD)
                for account in [*DEMO["members"], *DEMO["drivers"]]:
                    store.set_password_hash(
                        account.get("driver_id") or account["member_id"], secret
                    )
                for member in DEMO["staff"]:
                    store.add_staff(**member)
                    store.set_staff_password_hash(member["staff_id"], hash_password(STAFF_PASSWORD))
        except StoreError as exc:
            raise UsageError(
                f"{exc}: the demo fleet is (partly) there already; nothing was changed"
            ) from None
    print(f"{store.url}: demo fleet loaded")
    print(f"  stations: {', '.join(s['station_id'] for s in DEMO['stations'])}")
    print(f"  cars:     {', '.join(c['car_id'] for c in DEMO['cars'])}")
    for card in DEMO["cards"]:
        driver = next(d for d in DEMO["drivers"] if d["driver_id"] == card["driver_id"])
        print(f"  driver {driver['driver_id']} {driver['name']}: card IDm {card['idm']}")
    print(f"  every account's password: {DEMO_PASSWORD}")
    staff = ", ".join(f"{m['staff_id']} ({m['role']})" for m in DEMO["staff"])
    print(f"  console staff: {staff}; password: {STAFF_PASSWORD}")
    return 0


def _read_password(args: argparse.Namespace, who: str, least: int = 4) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"new password for {who}: ")
    if len(password) < least:
        raise UsageError(f"the password must have at least {least} characters; nothing was changed")
    return password


def _set_password(args: argparse.Namespace) -> int:
    password = _read_password(args, args.account_id)
    with _open(args) as store:
        store.set_password_hash(args.account_id, hash_password(password), must_change=args.initial)
    print(
        f"password of {args.account_id} set"
        + (" (to be changed at the first login)" if args.initial else "")
    )
    return 0


def _instant(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone, e.g. {text}+09:00")
    return t


def _add_staff(args: argparse.Namespace) -> int:
    password = _read_password(args, args.staff_id, least=8)
    with _open(args) as store, store.batch():
        staff = store.add_staff(
            args.staff_id,
            name=args.name,
            role=args.role,
            car_id=args.car,
            window_start=args.window_start,
            window_end=args.window_end,
        )
        store.set_staff_password_hash(staff.staff_id, hash_password(password))
        store.audit("cli", "add_staff", staff.staff_id, "ok", {"role": staff.role})
    grant = f" for {staff.car_id}, {args.window_start} to {args.window_end}" if staff.car_id else ""
    print(f"staff {staff.staff_id} added as {staff.role}{grant}")
    return 0


def _set_staff_password(args: argparse.Namespace) -> int:
    password = _read_password(args, args.staff_id, least=8)
    with _open(args) as store:
        store.set_staff_password_hash(args.staff_id, hash_password(password))
        store.audit("cli", "set_staff_password", args.staff_id, "ok", {})
    print(f"password of staff {args.staff_id} set")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """The whole cloud in one process: the API, the sync with the cars over MQTT (an embedded
    broker unless --broker names one), and the drivers' mails when --smtp names a server."""
    import contextlib
    import logging

    from cloud.accounts import Accounts, default_accounts
    from cloud.alerts import AlertWatch
    from cloud.broker import EmbeddedBroker
    from cloud.clock import ClockError, parse_clock
    from cloud.notify import Mailer, SmtpConfig
    from cloud.policy import PolicyError, default_policy, load_policy
    from cloud.rollouts import RolloutDriver
    from cloud.server import serve
    from cloud.sync import CloudSync, SyncConfig

    try:
        policy = default_policy() if args.policy is None else load_policy(args.policy)
    except (PolicyError, OSError) as exc:
        raise UsageError(f"--policy: {exc}") from None
    try:
        smtp = None if args.smtp is None else SmtpConfig.from_url(args.smtp)
    except ValueError as exc:
        raise UsageError(f"--smtp: {exc}") from None
    if args.alert_mail and smtp is None:
        raise UsageError("--alert-mail needs --smtp: the alerts go out through that server")
    if args.offline_alert_minutes <= 0:
        raise UsageError("--offline-alert-minutes: must be more than 0")
    try:
        clock = parse_clock(args.clock)
    except ClockError as exc:
        raise UsageError(f"--clock: {exc}") from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(open_store(args.db, clock=clock, migrate=True))
        if store.get_setting(FLEET_KEY) is None:
            store.set_setting(FLEET_KEY, secrets.token_hex(32))
        if args.broker is None:
            broker = EmbeddedBroker(
                Accounts(default_accounts()), host=args.broker_host, port=args.broker_port
            ).start()
            stack.callback(broker.stop)
            url, password = broker.url, broker.cloud_password
        else:
            url, password = args.broker, args.broker_password
        try:
            config = SyncConfig(url, password=password, worker=args.worker, cafile=args.broker_ca)
            config.endpoint()
        except ValueError as exc:
            raise UsageError(f"--broker: {exc}") from None
        sync_store = stack.enter_context(open_store(args.db, clock=clock, migrate=False))
        sync = stack.enter_context(CloudSync(sync_store, policy, config, clock=clock))
        if smtp is not None:
            mail_store = stack.enter_context(open_store(args.db, clock=clock, migrate=False))
            stack.enter_context(Mailer(mail_store, policy, smtp, clock=clock))
        alert_store = stack.enter_context(open_store(args.db, clock=clock, migrate=False))
        stack.enter_context(
            AlertWatch(
                alert_store,
                offline_after=dt.timedelta(minutes=args.offline_alert_minutes),
                send=None if smtp is None else smtp.send,
                to=args.alert_mail,
                sender=smtp.sender if smtp else "",
                clock=clock,
            )
        )
        rollout_store = stack.enter_context(open_store(args.db, clock=clock, migrate=False))
        stack.enter_context(
            RolloutDriver(rollout_store, sync, command_timeout=args.command_timeout)
        )
        updates = None
        if args.updates:
            from cloud.update_repo import Refresher
            from cloud.updates_cli import open_repo

            updates = open_repo(args.updates)
            stack.enter_context(Refresher(updates))
        print(
            f"kagi cloud: serving {store.url} with policy {policy.name!r} on "
            f"http://{args.host}:{args.port} (API documentation at /docs); cars on {url}"
            + ("" if args.broker else " (embedded broker)")
            + (f"; mail via {smtp.host}:{smtp.port}" if smtp else "; mails wait in the outbox")
            + ("" if args.clock == "system" else f"; clock {args.clock}"),
            flush=True,
        )
        serve(
            store,
            policy,
            args.host,
            args.port,
            cars=sync,
            clock=clock,
            command_timeout=args.command_timeout,
            updates=updates,
        )
    return 0


def list_records(store: Store, what: str, **filters: str | None) -> list[dict[str, Any]]:
    """What `kagi cloud list WHAT` shows, as plain records (times in ISO 8601); `filters` are
    its options without the dashes (`car="car-001"`), None meaning not given."""
    if what not in LISTS:
        raise UsageError(f"list: no list {what!r}; lists: {', '.join(LISTS)}")
    method, takes = LISTS[what]
    given = {name: value for name, value in filters.items() if value is not None}
    wrong = sorted(set(given) - set(takes))
    if wrong:
        options = ", ".join(f"--{t}" for t in takes) or "none"
        raise UsageError(f"list {what}: no filter --{wrong[0]} (its filters: {options})")
    rows = getattr(store, method)(**{takes[name]: value for name, value in given.items()})
    return [_plain(dataclasses.asdict(r)) for r in rows]


def _list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        records = list_records(store, args.what, **{f: getattr(args, f) for f in FILTERS})
    if args.json:
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
    else:
        _table(records)
    return 0


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, dt.date | dt.datetime) else v for k, v in record.items()
    }


def _table(records: list[dict[str, Any]]) -> None:
    if not records:
        print("(none)")
        return
    keys = [k for k in records[0] if k not in ("created_at", "updated_at")]
    cells = [[("" if r[k] is None else str(r[k])) for k in keys] for r in records]
    widths = [max(len(k), *(len(row[i]) for row in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

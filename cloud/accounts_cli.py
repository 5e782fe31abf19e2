"""`kagi cloud car-account CAR_ID` (create or reset a car's broker account, its password shown
once) and `kagi cloud mosquitto-config` (a Mosquitto configuration for the fleet from the same
password file): the broker's commands over `cloud/accounts.py` and `cloud/mosquitto.py`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cloud.accounts import (
    CLOUD_USER,
    DEFAULT_ACCOUNTS,
    Accounts,
    AccountsError,
    Tls,
    check_user,
    default_accounts,
)
from cloud.cli_errors import refusing
from cloud.mosquitto import write_config
from cloud.store import StoreError

_refusing = refusing("cloud", AccountsError, StoreError, OSError)


def add_commands(cmds: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register the broker commands under `kagi cloud` (`parents` give `--db`)."""
    accounts = argparse.ArgumentParser(add_help=False)
    accounts.add_argument(
        "--accounts",
        default=default_accounts(),
        help=f"the fleet's broker password file (default $KAGI_BROKER_ACCOUNTS or "
        f"{DEFAULT_ACCOUNTS})",
    )
    text = "create or reset a car's broker account; prints its new password once"
    p = cmds.add_parser("car-account", parents=[*parents, accounts], help=text, description=text)
    p.add_argument("car_id")
    p.set_defaults(func=_refusing(_car_account))

    text = "write a Mosquitto configuration (password file, ACL, TLS) for the fleet into a folder"
    p = cmds.add_parser(
        "mosquitto-config", parents=[*parents, accounts], help=text, description=text
    )
    p.add_argument("--out", required=True, help="the folder to write into (created if missing)")
    p.add_argument("--bind", default="", help="listen address (default: every interface)")
    p.add_argument("--port", type=int, help="listen port (default 8883 with TLS, else 1883)")
    p.add_argument("--certfile", help="the broker's TLS certificate (PEM)")
    p.add_argument("--keyfile", help="the broker's TLS private key (PEM)")
    p.add_argument("--cafile", help="the operator's CA certificate (PEM)")
    p.add_argument(
        "--new-cloud-password",
        action="store_true",
        help=f"give the cloud's account ({CLOUD_USER}) a new password (printed once)",
    )
    p.add_argument(
        "--no-persistence", action="store_true", help="keep no retained messages or sessions"
    )
    p.set_defaults(func=_refusing(_mosquitto_config))


def _car_account(args: argparse.Namespace) -> int:
    from cloud.store import open_store

    car_id = args.car_id
    if car_id == CLOUD_USER:
        raise AccountsError(f"{CLOUD_USER!r} is the cloud's account, not a car")
    check_user(car_id)
    with open_store(args.db, migrate=False) as store:
        store.get_car(car_id)  # NotFound names the car
    accounts = Accounts(args.accounts)
    existed = car_id in accounts
    password = accounts.create(car_id)
    print(f"car {car_id}: broker account {'reset' if existed else 'created'} in {accounts.path}")
    print(f"  user:     {car_id}")
    print(f"  password: {password}")
    print("  (shown once: provision the car unit with it; the file keeps only its hash)")
    if existed:
        print("  the old password no longer works; Mosquitto needs `mosquitto-config` + SIGHUP")
    return 0


def _mosquitto_config(args: argparse.Namespace) -> int:
    files = (args.certfile, args.keyfile)
    if any(files) and not all(files):
        raise AccountsError("TLS needs both --certfile and --keyfile")
    if args.cafile and not all(files):
        raise AccountsError("--cafile goes with --certfile and --keyfile (the broker's TLS)")
    tls = Tls.of(args.certfile, args.keyfile, args.cafile) if all(files) else None
    port = args.port if args.port is not None else (8883 if tls else 1883)
    if not 0 < port < 65536:
        raise AccountsError(f"--port: expected 1-65535, got {port}")
    accounts = Accounts(args.accounts)
    cars = [u for u in accounts.users() if u != CLOUD_USER]
    cloud_password = None
    if args.new_cloud_password or CLOUD_USER not in accounts:
        cloud_password = accounts.create(CLOUD_USER)
    out = Path(args.out).resolve()
    config = write_config(
        out,
        {},
        password_file=accounts.path,
        port=port,
        host=args.bind,
        persistence=not args.no_persistence,
        cafile=None if tls is None or tls.cafile is None else str(tls.cafile),
        certfile=None if tls is None else str(tls.certfile),
        keyfile=None if tls is None else str(tls.keyfile),
    )
    print(f"wrote {config}, {out / 'passwords'} and {out / 'acl'}: {len(cars)} car account(s)")
    if cloud_password is not None:
        print(f"  cloud account {CLOUD_USER}, password (shown once): {cloud_password}")
    _missing_cars(args.db, set(cars))
    if tls is None and args.bind not in ("127.0.0.1", "localhost", "::1"):
        print(
            "  warning: no TLS on a listener others can reach: passwords would cross the "
            "network in clear (give --certfile, --keyfile and --cafile)",
            file=sys.stderr,
        )
    print(f"  run: mosquitto -c {config}   (files must be readable by the user mosquitto runs as)")
    return 0


def _missing_cars(db: str, have: set[str]) -> None:
    """Name the store's cars that have no broker account (they could not connect)."""
    from cloud.store import StoreError, open_store

    if "://" not in db and not Path(db).exists():
        return
    try:
        with open_store(db, migrate=False) as store:
            cars = [c.car_id for c in store.list_cars()]
    except StoreError:
        return
    missing = [c for c in cars if c not in have]
    if missing:
        print(
            f"  warning: no broker account for {', '.join(missing)}: "
            f"create one with `kagi cloud car-account CAR_ID`",
            file=sys.stderr,
        )

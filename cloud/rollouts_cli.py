"""`kagi cloud rollout start|list|show|pause|resume|abort` (SPEC O-OTA-1): send a published
release to cars in stages, and watch or steer it. `kagi cloud serve` sends the offers."""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from cloud import rollouts
from cloud.cli_errors import refusing
from cloud.store import StoreError, open_store
from cloud.store.rollouts import Rollout
from cloud.updates_cli import open_repo
from protocol.release import ReleaseError

_refusing = refusing("cloud", StoreError, ReleaseError, OSError)


def add_commands(cmds: Any, parents: list[argparse.ArgumentParser]) -> None:
    text = "send a published release to cars in stages, and watch or steer it"
    rollout = cmds.add_parser("rollout", help=text, description=text)
    sub = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")

    text = "start a rollout: the canary cars first, the rest once every canary is healthy"
    p = sub.add_parser("start", parents=parents, help=text, description=text)
    p.add_argument("version", help="a release published in the repository")
    p.add_argument("--repo", required=True, help="the update repository's folder")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every car of the fleet")
    which.add_argument("--station", help="the cars of this station")
    which.add_argument("--cars", help="these cars, comma-separated")
    first = p.add_mutually_exclusive_group()
    first.add_argument("--canaries", type=int, default=2,
                       help="how many of the cars (in order) go first (default 2)")  # fmt: skip
    first.add_argument("--canary", action="append", help="this car goes first (repeatable)")
    p.set_defaults(func=_refusing(_start))

    p = sub.add_parser("list", parents=parents, help="the rollouts, newest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_refusing(_list))

    p = sub.add_parser("show", parents=parents, help="a rollout and each car's step")
    p.add_argument("rollout_id", type=int, nargs="?", help="default: the one going now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_refusing(_show))

    text = "send a published fleet configuration (O-OTA-4) to every car, applied between trips"
    p = sub.add_parser("config", parents=parents, help=text, description=text)
    p.add_argument("version", type=int, help="a configuration published in the repository")
    p.add_argument("--repo", required=True, help="the update repository's folder")
    p.set_defaults(func=_refusing(_config))

    for action, says in (
        ("pause", "offer to no more cars until resumed"),
        ("resume", "go on with a paused rollout"),
        ("abort", "stop for good (cars that installed it keep it)"),
    ):
        p = sub.add_parser(action, parents=parents, help=says, description=says)
        p.add_argument("rollout_id", type=int)
        p.set_defaults(func=_refusing(_act), verb=action)


def _start(args: argparse.Namespace) -> int:
    published = open_repo(args.repo).versions()
    with open_store(args.db) as store:
        if args.cars:
            cars = [c.strip() for c in args.cars.split(",") if c.strip()]
        else:
            cars = [c.car_id for c in store.list_cars(station_id=args.station)]
        canaries: list[str] | int = args.canary if args.canary else args.canaries
        started = rollouts.start(
            store, published, args.version, cars, canaries, f"cli:{getpass.getuser()}"
        )
    print(f"rollout {started.rollout_id} of {started.version} started for "
          f"{len(started.cars)} cars ({_canaries(started)})")  # fmt: skip
    return 0


def _config(args: argparse.Namespace) -> int:
    published = open_repo(args.repo).config_versions()
    with open_store(args.db) as store:
        rollouts.push_config(store, published, args.version)
    print(f"fleet configuration {args.version}: offered to every car as it is online")
    return 0


def _canaries(r: Rollout) -> str:
    first = [c.car_id for c in r.cars if c.canary]
    return f"canaries first: {', '.join(first)}" if first else "no canaries"


def _list(args: argparse.Namespace) -> int:
    with open_store(args.db) as store:
        found = store.list_rollouts()
    if args.json:
        print(json.dumps([as_record(r) for r in found], indent=2))
        return 0
    for r in found:
        print(f"{r.rollout_id}\t{r.version}\t{r.status}\t{r.stage}\t{r.reason}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with open_store(args.db) as store:
        if args.rollout_id is None:
            found = store.active_rollout()
            if found is None:
                raise StoreError("no rollout is going now; name one (kagi cloud rollout list)")
        else:
            found = store.get_rollout(args.rollout_id)
    if args.json:
        print(json.dumps(as_record(found), indent=2))
        return 0
    print(f"rollout {found.rollout_id} of {found.version}: {found.status}, stage {found.stage}"
          + (f" ({found.reason})" if found.reason else ""))  # fmt: skip
    for car in found.cars:
        mark = "canary" if car.canary else ""
        print(f"  {car.car_id}\t{mark}\t{car.step}\t{car.reason}")
    return 0


def _act(args: argparse.Namespace) -> int:
    with open_store(args.db) as store:
        done = store.act_on_rollout(args.rollout_id, args.verb)
    print(f"rollout {done.rollout_id} of {done.version}: {done.status}")
    return 0


def as_record(r: Rollout) -> dict[str, Any]:
    return {
        "rollout_id": r.rollout_id, "version": r.version, "status": r.status,
        "stage": r.stage, "reason": r.reason, "created_by": r.created_by,
        "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat(),
        "counts": r.counts(),
        "cars": [
            {"car_id": c.car_id, "canary": c.canary, "step": c.step, "reason": c.reason,
             "offered_at": c.offered_at.isoformat() if c.offered_at else None,
             "step_at": c.step_at.isoformat() if c.step_at else None}
            for c in r.cars
        ],
    }  # fmt: skip

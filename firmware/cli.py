"""`kagi unit …`: run a car unit, read its saved state."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from firmware.config import ConfigError, load_unit_config
from firmware.launcher import ENV_SLOTS
from firmware.store import SqliteStore, StoreError


def add_parser(rooms: Any) -> Any:
    """`kagi unit …`; returns its subcommands, to which the technician tools add theirs
    (`kagi unit provision`, `kagi unit monitor`, from tools/)."""
    unit = rooms.add_parser("unit", help="the car unit")
    cmds = unit.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = cmds.add_parser("run", help="run the car unit")
    run.add_argument("--config", required=True, help="the unit's TOML configuration file")
    run.set_defaults(func=_run)
    state = cmds.add_parser("state", help="print the saved trip state and outbox, read-only")
    state.add_argument("--config", required=True, help="the unit's TOML configuration file")
    state.set_defaults(func=_state)
    launch = cmds.add_parser(
        "launch",
        help="run the car unit from its install slots, holding a new version to its deadline "
        "and falling back by itself (the car's service runs this)",
    )
    launch.add_argument("--config", required=True, help="the unit's TOML configuration file")
    launch.add_argument("--slots", required=True, help="the unit's install folder (A/B slots)")
    launch.set_defaults(func=_launch)
    return cmds


def _launch(args: argparse.Namespace) -> int:
    from firmware.launcher import Launcher
    from firmware.slots import SlotError, Slots

    slots = Slots(Path(args.slots))
    try:
        slots.running()
    except (OSError, SlotError) as exc:
        return _fail(f"{args.slots}: no install slots ({exc})")
    launcher = Launcher(slots, [sys.executable, "-m", "tools.cli", "unit", "run",
                                "--config", args.config])  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: launcher.stop())
    try:
        launcher.run()
    except KeyboardInterrupt:
        launcher.stop()
    return 0


def _fail(message: str) -> int:
    print(f"kagi unit: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    from firmware.unit import Unit

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Signals are taken by sigwait on this thread, never by a handler that could interrupt the
    # runner while it holds its queue's lock. Threads started from here inherit the mask.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        config = load_unit_config(args.config)
        unit = Unit(config)
        unit.start()
    except (ConfigError, StoreError) as exc:
        if args.debug:
            raise
        return _fail(str(exc))
    core = unit.runner.core
    assert core is not None
    main_thread = threading.get_ident()

    def run() -> None:
        try:
            unit.runner.run()
        finally:  # wake the main thread whatever ended the runner
            signal.pthread_kill(main_thread, signal.SIGTERM)

    runner = threading.Thread(target=run, name="runner")
    runner.start()
    print(f"kagi unit: {config.car_id} ready, state {core.state}", file=sys.stderr, flush=True)
    stopping = threading.Event()
    if os.environ.get(ENV_SLOTS):  # started by the launcher: say when this version is healthy
        from firmware.startup_check import confirm_when_healthy

        here = Path(__file__).resolve().parent.parent
        print(f"kagi unit: running from {here}", file=sys.stderr, flush=True)
        threading.Thread(
            target=confirm_when_healthy, args=(unit, stopping), name="startup-check", daemon=True
        ).start()
    signal.sigwait(stop_signals)
    stopping.set()
    unit.runner.stop()
    runner.join()
    unit.close()
    return 0


def _state(args: argparse.Namespace) -> int:
    try:
        config = load_unit_config(args.config)
        if not Path(config.database).exists():
            return _fail(f"{config.database}: no database yet (the unit has never run)")
        store = SqliteStore(config.database)
        snapshot, bookings = store.load()
        pending = store.pending(limit=1_000_000)
        last_seq = store.last_seq()
        store.close()
    except (ConfigError, StoreError) as exc:
        if args.debug:
            raise
        return _fail(str(exc))
    out = {
        "car_id": config.car_id,
        "trip_state": snapshot,
        "bookings": bookings.to_dict(),
        "outbox": [e.to_dict() for e in pending],
        "last_seq": last_seq,
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0

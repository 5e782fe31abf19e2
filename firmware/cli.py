"""`kagi unit …`: run a car unit, read its saved state."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from firmware.config import ConfigError, load_unit_config
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
    return cmds


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
    signal.sigwait(stop_signals)
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

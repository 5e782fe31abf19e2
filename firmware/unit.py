"""Assembles one car unit from its configuration: store, adapters by URL, clock, runner."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.clock import ManualClock, SystemClock
from firmware.config import ConfigError, TripConfig, UnitConfig
from firmware.config_agent import ConfigAgent, apply_between_trips
from firmware.control import Control
from firmware.fakes import FakeBody, FakeCloudLink, FakeReader
from firmware.inputs import ConfigStep, UpdateStep
from firmware.launcher import ENV_SLOTS
from firmware.ports import Body, Clock, CloudLink, Reader, Store
from firmware.runner import Runner
from firmware.slots import Slots
from firmware.store import SqliteStore
from firmware.update_agent import UpdateAgent
from firmware.update_fetch import StagedRelease, fetch_release
from firmware.update_gate import install_refusal
from firmware.update_worker import UpdateWorker

log = logging.getLogger(__name__)


def _scheme(url: str) -> str:
    return url.split(":", 1)[0] + ":" if ":" in url else url


def make_reader(url: str, master_key: bytes | None = None) -> Reader:
    """`sim:` (the fake), or an nfcpy device path: `usb[:VID:PID]`, `tty:PORT:DRIVER`,
    `udp:HOST:PORT`. `master_key` is the card master key for FeliCa Lite-S authentication."""
    if _scheme(url) == "sim:":
        return FakeReader()
    if url.split(":", 1)[0] in ("usb", "tty", "com", "udp"):
        from firmware.reader_nfc import NfcReader, check_path  # nfcpy only where it is used

        try:
            check_path(url)
        except ValueError as exc:
            raise ConfigError(f"unit.reader: {exc}") from None
        return NfcReader(url, master_key)
    raise ConfigError(
        f"unit.reader: no reader adapter for {url!r} "
        "(this build knows: sim:, usb[:VID:PID], tty:PORT:DRIVER, udp:HOST:PORT)"
    )


def make_body(url: str) -> Body:
    """`sim:` (the fake), or the I/O board on a serial line by any URL pyserial's
    `serial_for_url` takes: a device path (`/dev/ttyUSB0`), a pty, `socket://HOST:PORT`…"""
    if _scheme(url) == "sim:":
        return FakeBody()
    from firmware.board_link import BoardLink  # pyserial only where it is used

    try:
        return BoardLink(url)
    except ValueError as exc:
        raise ConfigError(
            f"unit.board: {exc} (this build knows: sim:, a serial device path, socket://HOST:PORT)"
        ) from None


def make_cloud(config: UnitConfig, store: Store, clock: Clock) -> CloudLink:
    """`none:` (a link that sends nothing), or the cloud's MQTT broker:
    `mqtt://CAR_ID:PASSWORD@HOST:PORT`, `mqtts://…` with `unit.cloud_ca` (firmware.cloud_link)."""
    url = config.cloud
    if _scheme(url) == "none:":
        return FakeCloudLink()
    if url.split(":", 1)[0] in ("mqtt", "mqtts"):
        from firmware.cloud_link import LinkSettings, MqttCloudLink  # paho only where it is used

        settings = LinkSettings(
            max_skew=config.cloud_max_skew,
            reconnect_max=max(1.0, config.cloud_reconnect_max),
            hold=config.cloud_hold,
        )
        try:
            link = MqttCloudLink(
                url,
                config.car_id,
                config.cloud_public_key,
                store,
                clock,
                ca=config.cloud_ca,
                settings=settings,
            )
        except ValueError as exc:
            raise ConfigError(f"unit.cloud: {exc}") from None
        link.config_version = config.fleet_config_version
        return link
    raise ConfigError(
        f"unit.cloud: no cloud adapter for {url!r} (this build knows: none:, mqtt://, mqtts://)"
    )


def make_updates(config: UnitConfig, runner: Runner) -> UpdateWorker | None:
    """The update agent (O-OTA), when the unit has an update repository and runs from install
    slots under `kagi unit launch` (a unit started by hand cannot fall back, so takes none)."""
    if not config.updates:
        return None
    slots_root = os.environ.get(ENV_SLOTS)
    if not slots_root:
        log.warning("updates: not started by `kagi unit launch`, so this unit takes no updates")
        return None

    def gate() -> str | None:
        def ask() -> str | None:
            core = runner.core
            assert core is not None
            now = runner.clock.now()
            return install_refusal(core.state, core.overlay, core.bookings, now,
                                   config.trip.timing, lead=config.update_lead)  # fmt: skip

        refusal: str | None = runner.submit(ask).result(30)
        return refusal

    def report(step: str, **details: Any) -> None:
        runner.post(UpdateStep(step, details))

    root, state = Path(config.updates_root).read_bytes(), Path(config.database).parent / "updates"
    agent = UpdateAgent(
        Slots(Path(slots_root)), config.updates, root, state, gate, runner.stop, report,
        deadline_s=config.update_deadline,
    )  # fmt: skip

    def apply(version: int, body: bytes, trip: TripConfig) -> str | None:
        def job() -> str | None:
            return apply_between_trips(runner, Path(config.folder), version, body, trip)

        refusal: str | None = runner.submit(job).result(30)
        return refusal

    def config_report(step: str, **details: Any) -> None:
        runner.post(ConfigStep(step, details))

    if config.board_console:
        agent.board = board_sender(config, runner, agent.slots, root, state, gate)
    configure = ConfigAgent(config, config.updates, root, state, apply, config_report,
                            running=config.fleet_config_version)  # fmt: skip
    return UpdateWorker(agent, configure)


def board_sender(
    config: UnitConfig, runner: Runner, slots: Slots, root: bytes, state: Path,
    gate: Callable[[], str | None],
) -> Callable[[str], tuple[str, str]]:  # fmt: skip
    """Sends a release's board firmware on over the board's USB console (O-OTA-3)."""
    from firmware.board_update import BoardSender  # mpremote only where it is used

    def hello() -> dict[str, Any]:
        board = runner.body.status_fields().get("board") or {}
        return dict(board.get("board") or {}) if board.get("up") else {}

    def release(version: str) -> StagedRelease:  # verified again, from what was kept
        return fetch_release(config.updates, root, state, version, running=version)

    return BoardSender(config.board_console, slots, release, lambda: hello().get("name"),
                       lambda: hello().get("build"), gate)  # fmt: skip


class Unit:
    """A running car unit: `start()`, then `runner.run()` on the main thread, then `close()`."""

    def __init__(self, config: UnitConfig) -> None:
        self.config = config
        reader, body = (
            make_reader(config.reader, config.card_master_key_bytes),
            make_body(config.board),
        )
        self.store = SqliteStore(config.database)
        clock: Clock = SystemClock()
        if config.clock == "manual":
            snapshot, _ = self.store.load()
            last = (snapshot or {}).get("data", {}).get("last_time")
            start = config.clock_start or SystemClock().now()
            clock = ManualClock(last if last is not None else start)
        cloud = make_cloud(config, self.store, clock)
        self.runner = Runner(
            config.trip, config.card_key_bytes, self.store, body, reader, cloud, clock
        )
        self.control: Control | None = None
        self.updates = make_updates(config, self.runner)
        if self.updates is not None:
            self.runner.updates = self.updates.offer
            self.runner.configure = self.updates.offer_config

    def start(self) -> None:
        self.runner.start()
        if self.updates is not None:
            self.updates.start()
        if self.config.control:
            self.control = Control(self.config.control, self.runner, self.status)
            self.control.start()

    def status(self) -> dict[str, Any]:
        """What the unit holds now (run on the runner's thread)."""
        core = self.runner.core
        assert core is not None
        snap = core.snapshot()
        status: dict[str, Any] = {
            "car_id": self.config.car_id,
            "now": self.runner.clock.now(),
            "state": snap["state"],
            "overlay": snap["overlay"],
            **snap["data"],
            "bookings_version": core.bookings.version,
            "outbox": {
                "pending": self.store.pending_count(),
                "last_seq": self.store.last_seq(),
            },
        }
        status.update(self.runner.parts())
        return status

    def close(self) -> None:
        if self.updates is not None:
            self.updates.stop()
        if self.control is not None:
            self.control.stop()
        self.runner.close()

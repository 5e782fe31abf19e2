"""The runner: one event queue, the only writer of trip state.

Adapters post inputs; the runner takes them one at a time, lets the core decide, commits the new
state with its events in one transaction, and only then drives the outputs. A crash before the
commit leaves the old state (whose outputs are re-applied at start-up); a crash after it leaves the
new state, whose outputs are re-applied. Nothing is decided twice and nothing is lost.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from firmware.bookings import Bookings
from firmware.config import TripConfig
from firmware.core import TripCore
from firmware.effects import CAR_OUTPUTS, CommandResult, Effect, OfferConfig, OfferUpdate, Report
from firmware.inputs import BookingsChanged, ClockMoved, Input, RemoteCommand, check_input
from firmware.ports import Body, Clock, CloudLink, Reader, Store

log = logging.getLogger(__name__)


@dataclass
class _Item:
    event: Input | Callable[[], Any]
    reply: Future[Any] | None


class Runner:
    def __init__(
        self,
        config: TripConfig,
        card_key: bytes,
        store: Store,
        body: Body,
        reader: Reader,
        cloud: CloudLink,
        clock: Clock,
    ) -> None:
        self.config = config
        self.card_key = card_key
        self.store = store
        self.body = body
        self.reader = reader
        self.cloud = cloud
        self.clock = clock
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self.core: TripCore | None = None
        # the update agent's `offer(version)` (O-OTA-1) and the configuration agent's
        # (O-OTA-4); None: this unit takes no updates
        self.updates: Callable[[str], None] | None = None
        self.configure: Callable[[int], None] | None = None

    # ---- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """U-DATA-1: restore the state, re-apply its outputs, then accept input."""
        snapshot, bookings = self.store.load()
        self.core = TripCore(self.config, self.card_key, bookings, snapshot)
        log.info("restored state %s (deadlines %s)", self.core.state, self.core.deadlines.to_dict())
        effects = self.core.restore(self.clock.now())
        self._commit_and_apply(effects, None)
        self.body.start(self.post)
        self.cloud.start(self.submit)
        self.reader.start(self.post)

    def stop(self) -> None:
        self._queue.put(None)

    def close(self) -> None:
        for adapter in (self.reader, self.cloud, self.body):
            adapter.stop()
        self.store.close()

    def post(self, event: Input) -> None:
        """Called by adapters from any thread."""
        self._queue.put(_Item(event, None))

    def submit(self, work: Input | Callable[[], Any]) -> Future[Any]:
        """Post an input (or a query run on the runner's thread) and get a future of its result:
        the effects of an input once they are committed and applied."""
        future: Future[Any] = Future()
        self._queue.put(_Item(work, future))
        return future

    def run(self) -> None:
        """Take inputs until stop(); between inputs, fire deadlines as they fall due."""
        assert self.core is not None, "start() first"
        while True:
            wait = self.clock.timeout(self.core.next_due())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = _Item(ClockMoved(), None)  # a deadline fell due
            if item is None:
                return
            self._take(item)

    def _take(self, item: _Item) -> None:
        try:
            work = item.event
            result = work() if callable(work) else self.step(work)
        except Exception as exc:
            log.exception("input %r failed", item.event)
            if item.reply is not None:
                item.reply.set_exception(exc)
            return
        if item.reply is not None:
            item.reply.set_result(result)

    # ---- one step ---------------------------------------------------------------------------

    def step(self, event: Input | None) -> list[Effect]:
        """Apply one input (or only what fell due, for None); returns the effects applied."""
        core = self.core
        assert core is not None
        if event is not None:
            try:
                check_input(event)
            except ValueError as exc:
                log.warning("refused input: %s", exc)  # X-SEC-3: state unchanged
                raise
            if isinstance(event, RemoteCommand) and self.store.command_seen(event.id):
                log.warning("command %s already applied; ignored", event.id)
                return []
        if isinstance(event, RemoteCommand) and event.name == "self_test":
            event = RemoteCommand(event.id, event.name, {**event.args, "parts": self.parts()})
        if isinstance(event, RemoteCommand) and event.name in ("update", "configure"):
            agent = self.updates if event.name == "update" else self.configure
            args = {**event.args, "updates": agent is not None}
            event = RemoteCommand(event.id, event.name, args)
        now = self.clock.now()
        if event is None:
            event = ClockMoved()
        before = core.state
        effects = core.handle(event, now)
        bookings = event.bookings if isinstance(event, BookingsChanged) else None
        command_id = event.id if isinstance(event, RemoteCommand) else None
        self._commit_and_apply(effects, bookings, command_id)
        if core.state != before:
            log.info("%s -> %s on %s", before, core.state, type(event).__name__)
        return effects

    def parts(self) -> dict[str, Any]:
        """What each adapter reports of itself (the self-test's `parts`: board link, cloud)."""
        fields: dict[str, Any] = {}
        for adapter in (self.body, self.reader, self.cloud):
            fields.update(adapter.status_fields())
        return fields

    def _commit_and_apply(
        self,
        effects: list[Effect],
        bookings: Bookings | None,
        command_id: str | None = None,
    ) -> None:
        assert self.core is not None
        reports = [e for e in effects if isinstance(e, Report | CommandResult)]
        if bookings is not None and bookings is not self.core.bookings:
            bookings = None  # an older snapshot the core ignored
        snapshot = self.core.snapshot()
        events = self.store.commit(snapshot, reports, bookings, command_id)
        for effect in effects:
            if isinstance(effect, CAR_OUTPUTS):
                try:
                    self.body.apply(effect)
                except Exception:
                    log.exception("the body failed to apply %r", effect)
        if events:
            self.cloud.outbox_changed()
        self.cloud.committed(snapshot, self.core.bookings.version)
        for effect in effects:
            if isinstance(effect, OfferUpdate) and self.updates is not None:
                self.updates(effect.version)  # after the commit: its result is on its way
            if isinstance(effect, OfferConfig) and self.configure is not None:
                self.configure(effect.version)

    def reconfigure(self, config: TripConfig) -> None:
        """O-OTA-4: the trip configuration from now on (on the runner's thread, between trips)."""
        assert self.core is not None
        self.config = config
        self.core.reconfigure(config)

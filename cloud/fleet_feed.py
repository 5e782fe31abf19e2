"""The console's live fleet (SPEC O-FLEET-1): what changed, pushed to every open fleet page as
server-sent events, from one store query per node every `interval` however many pages are open.

A car's kept state or presence report takes the next number of the fleet-wide order
(`car_sync.status_seq`). The poller asks for what lies after the highest number it has seen, less
a margin (two PostgreSQL writers may commit their numbers out of order), and passes on each car
whose number moved. A page opens its stream with the highest number it was rendered with, and
first gets what changed since, so nothing falls between the render and the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from cloud.store import Store
from cloud.store.console import FleetRow

log = logging.getLogger(__name__)

MARGIN = 2000  # numbers re-read behind the highest seen
RELOAD = "reload"  # a page that fell behind (its queue overflowed) reloads itself
END = "end"  # the server is stopping: each stream ends (the browser reconnects to another)
KEEPALIVE = 15.0  # seconds between comments on a quiet stream


@dataclass(eq=False)  # each page's own, kept in a set by identity
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=5000))
    full: bool = False


class FleetFeed:
    def __init__(
        self, store: Store, row: Callable[[FleetRow], dict[str, Any]], interval: float = 0.25
    ) -> None:
        self.store = store
        self.row = row
        self.interval = interval
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._seen: dict[str, int] = {}
        self._high = 0
        self._poll_lock = threading.RLock()
        self._primed = False

    # ---- the poller -------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="fleet-feed", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """End every stream and the poller (before the server stops, so it need not wait)."""
        self._stop.set()
        with self._lock:
            subscribers = list(self._subscribers)
        for s in subscribers:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                s.loop.call_soon_threadsafe(self._offer, s, END)
        if self._thread is not None:
            self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for r in self.poll():
                    self._publish(json.dumps(self.row(r)))
            except Exception:  # the database went away for a moment: try again
                log.exception("fleet feed: polling the store failed")
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
            self._stop.wait(self.interval)

    def poll(self) -> list[FleetRow]:
        """The cars whose report moved since the last poll: the index first (cheap, every
        `interval`), then the rows of those that moved."""
        with self._poll_lock:
            moved = []
            for car_id, seq in self.store.status_marks(max(0, self._high - MARGIN)):
                if self._seen.get(car_id, -1) < seq:
                    self._seen[car_id] = seq
                    moved.append(car_id)
                self._high = max(self._high, seq)
            return self.store.fleet_rows(moved) if moved else []

    def _prime(self) -> None:
        """The first look of this node only learns where the fleet stands (a page gets what
        it missed from its own catch-up)."""
        with self._poll_lock:
            if not self._primed:
                for car_id, seq in self.store.status_marks(0):
                    self._seen[car_id] = seq
                    self._high = max(self._high, seq)
                self._primed = True

    def _publish(self, message: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for s in subscribers:
            s.loop.call_soon_threadsafe(self._offer, s, message)

    @staticmethod
    def _offer(s: _Subscriber, message: str) -> None:
        if s.full:
            return
        try:
            s.queue.put_nowait(message)
        except asyncio.QueueFull:
            s.full = True
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    s.queue.get_nowait()
            s.queue.put_nowait(RELOAD)

    # ---- a page's stream --------------------------------------------------------------------

    async def stream(
        self,
        since: int,
        visible: Callable[[dict[str, Any]], bool],
        gone: Callable[[], Any],
    ) -> AsyncIterator[str]:
        """The server-sent events of one page: the rows it may see changed after `since`."""
        s = _Subscriber(asyncio.get_running_loop())
        await asyncio.to_thread(self._prime)
        with self._lock:
            self._subscribers.add(s)
            self._start()
        try:
            yield ": open\n\n"
            catch_up = await asyncio.to_thread(self.store.status_changes, since)
            for r in catch_up:
                row = self.row(r)
                if visible(row):
                    yield f"data: {json.dumps(row)}\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(s.queue.get(), KEEPALIVE)
                except TimeoutError:
                    if await gone():
                        return
                    yield ": keepalive\n\n"
                    continue
                if message == END:
                    return
                if message == RELOAD:
                    yield f"event: {RELOAD}\ndata: {{}}\n\n"
                    return
                if visible(json.loads(message)):
                    yield f"data: {message}\n\n"
        finally:
            with self._lock:
                self._subscribers.discard(s)

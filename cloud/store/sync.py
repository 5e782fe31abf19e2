"""The store's side of the sync with the cars and of the mail outbox (schema: m0002_sync).

- Snapshots (SPEC S-SYNC-1): which cars need a new snapshot (`cars_to_publish`, filled by
  triggers on every write that concerns a car), the rows a snapshot is built from, and
  `snapshot_turn`, which holds the car's sync row locked while one snapshot is built, published
  and recorded, so two workers never publish a car's versions out of order.
- Events (S-SYNC-2): `ingest_events` keeps every event by its id (a repeat is a no-op) and applies
  each car's events in their sequence order, each in a savepoint of the one transaction, through
  a callback of the sync; an event waiting for an earlier one is parked (`release_parked` gives
  up on a gap after a while).
- Commands (S-SYNC-3): each remote operation and its single result.
- State (S-SYNC-4): the last `state` and `online` report of each car.
- Notifications (N-MAIL-1): the outbox the triggers fill, claimed, sent and retried by
  `cloud.notify`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloud.store.core import (
    CARD_COLS,
    CHANGE_COLS,
    DRIVER_COLS,
    RES_SELECT,
    StoreCore,
    equal_to,
)
from cloud.store.errors import Conflict, InvalidValue, NotFound, StoreError
from cloud.store.records import Card, Driver, Reservation, ReservationChange

log = logging.getLogger(__name__)

EVENT_COLS = "event_id, car_id, seq, type, at, data, received_at, applied_at, outcome"
COMMAND_COLS = "command_id, car_id, name, args, issued_at, expires_at, status, result, answered_at"
NOTIFICATION_COLS = (
    "notification_id, kind, driver_id, reservation_id, change_id, card_hash, created_at, "
    "attempts, next_attempt_at, sent_at, last_error"
)
STATUS_COLS = (
    "car_id, snapshot_version, published_at, change_seq, published_change, event_seq, state, "
    "state_at, online, online_at, seen_at"
)
# Errors an event's application may end in that say "this event cannot be applied", for good:
# it is recorded as refused and the car's later events go on. Anything else (the database went
# away, a deadlock) rolls the whole ingest back, so the broker delivers the events again.
REFUSALS = (InvalidValue, NotFound, Conflict)

# O-FLEET-1: the fleet-wide order of state and presence changes (migration m0004)
_NEXT_STATUS = "(SELECT COALESCE(MAX(status_seq), 0) + 1 FROM car_sync)"


@dataclass(frozen=True)
class EventIn:
    """An event as a car sent it (protocol.messages.Event without its car)."""

    event_id: str
    seq: int
    type: str
    at: float  # the car's clock, seconds since the epoch
    data: dict[str, Any]


@dataclass(frozen=True)
class CarEvent:
    event_id: str
    car_id: str
    seq: int
    type: str
    at: float
    data: dict[str, Any]
    received_at: dt.datetime
    applied_at: dt.datetime | None  # None: parked, waiting for an earlier event of the car
    outcome: str | None  # applied, ignored: why, refused: why

    @property
    def at_time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.at, dt.UTC)


UNORDERED = frozenset({"command_result"})  # applied as they come, whatever is missing


class Apply(Protocol):
    """What the sync does with each event, inside the store's transaction."""

    def __call__(self, event: CarEvent) -> str:
        """The outcome recorded with the event; a store error refuses it (its writes undone)."""

    def writes(self, event_type: str) -> bool:
        """False if events of this type are only kept (nothing written, nothing refused): they
        need no savepoint of their own."""


@dataclass
class SnapshotTurn:
    """A car's sync row, held locked by `snapshot_turn`. Call `published` once the snapshot is
    out; leaving the turn without it only marks the current changes as covered."""

    car_id: str
    change_seq: int
    published_change: int
    version: int
    digest: str | None
    _published: tuple[int, str] | None = field(default=None, repr=False)

    @property
    def pending(self) -> bool:
        return self.change_seq > self.published_change

    def published(self, version: int, digest: str) -> None:
        if version <= self.version:
            raise ValueError(f"snapshot version {version} is not newer than {self.version}")
        self._published = (version, digest)


@dataclass(frozen=True)
class SnapshotRows:
    """What a car's snapshot is made of: its live reservations in the window, their drivers
    and those drivers' active cards."""

    reservations: tuple[Reservation, ...]
    drivers: tuple[Driver, ...]
    cards: tuple[Card, ...]


@dataclass(frozen=True)
class CommandRecord:
    command_id: str
    car_id: str
    name: str
    args: dict[str, Any]
    issued_at: float
    expires_at: float
    status: str  # pending | answered | timed_out
    result: dict[str, Any] | None  # the car's command_result (also a late one after timed_out)
    answered_at: dt.datetime | None


@dataclass(frozen=True)
class CarStatus:
    """What the cloud knows of a car (S-SYNC-4)."""

    car_id: str
    snapshot_version: int
    published_at: dt.datetime | None
    change_seq: int
    published_change: int
    event_seq: int  # the last event applied in order
    state: dict[str, Any] | None
    state_at: float | None
    online: bool | None
    online_at: float | None
    seen_at: dt.datetime | None


@dataclass(frozen=True)
class Notification:
    notification_id: int
    kind: str
    driver_id: str
    reservation_id: str | None
    change_id: int | None
    card_hash: str | None
    created_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None


class SyncStore(StoreCore):
    """Snapshots, car events, commands, car state and the notification outbox."""

    # ---- settings made once -----------------------------------------------------------------

    def setting_once(self, key: str, make: Callable[[], str]) -> str:
        """The setting `key`, made by `make()` the first time; two workers racing to make it
        both get the one that was stored first."""
        with self._tx():
            row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
            if row is not None:
                return str(row[0])
            self._execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, make()),
            )
            row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
            return str(row[0])

    # ---- snapshots --------------------------------------------------------------------------

    def cars_to_publish(self) -> list[str]:
        """Cars whose data changed since their last published snapshot."""
        with self._tx(write=False):
            rows = self._all(
                "SELECT car_id FROM car_sync WHERE change_seq > published_change ORDER BY car_id"
            )
        return [str(r[0]) for r in rows]

    def car_ids(self) -> list[str]:
        with self._tx(write=False):
            return [str(r[0]) for r in self._all("SELECT car_id FROM car_sync ORDER BY car_id")]

    @contextlib.contextmanager
    def snapshot_turn(self, car_id: str) -> Iterator[SnapshotTurn]:
        """The car's sync row, locked for the body: build the snapshot from what is committed,
        publish it, call `turn.published(version, digest)`. Another worker's turn on the same
        car waits until this one is recorded, so versions reach the broker in order. The record
        need not wait for the disk: lost in a crash, the car's snapshot is only published again,
        with a newer version (versions follow the clock)."""
        with self._tx(durable=False):
            row = self._one(
                "SELECT change_seq, published_change, snapshot_version, snapshot_digest "
                f"FROM car_sync WHERE car_id = ?{self._FOR_UPDATE}",
                (car_id,),
            )
            if row is None:
                raise NotFound("car", car_id)
            turn = SnapshotTurn(car_id, int(row[0]), int(row[1]), int(row[2]), row[3])
            yield turn
            if turn._published is not None:
                version, digest = turn._published
                self._execute(
                    "UPDATE car_sync SET published_change = ?, snapshot_version = ?, "
                    "snapshot_digest = ?, published_at = ? WHERE car_id = ?",
                    (turn.change_seq, version, digest, self._time(self._now()), car_id),
                )
            else:
                self._execute(
                    "UPDATE car_sync SET published_change = ? WHERE car_id = ?",
                    (turn.change_seq, car_id),
                )

    def snapshot_rows(
        self, car_id: str, *, ends_after: dt.datetime, starts_before: dt.datetime
    ) -> SnapshotRows:
        """The car's trips in use, and its reserved reservations ending after `ends_after` and
        starting before `starts_before`, with their drivers and the drivers' active cards; also
        the drivers (not the reservations) of its trips ended after `ends_after`."""
        with self._tx(write=False):
            rows = self._all(
                f"{RES_SELECT} WHERE r.car_id = ? AND (r.status = 'in_use' OR "
                "(r.status = 'reserved' AND r.ends_at > ? AND r.starts_at < ?)) "
                "ORDER BY r.starts_at, r.reservation_id",
                (car_id, self._time(ends_after), self._time(starts_before)),
            )
            reservations = tuple(self._reservation(r) for r in rows)
            # and the drivers of the car's trips ended since `ends_after`: the car still takes
            # their card in the forgotten-item window after the end (U-FGT-1)
            ended = self._all(
                "SELECT r.driver_id FROM reservations r JOIN trips t "
                "ON t.reservation_id = r.reservation_id WHERE r.car_id = ? "
                "AND r.status = 'completed' AND t.ended_at > ?",
                (car_id, self._time(ends_after)),
            )
            ids = sorted({r.driver_id for r in reservations} | {str(r[0]) for r in ended})
            drivers: tuple[Driver, ...] = ()
            cards: tuple[Card, ...] = ()
            if ids:
                marks = ", ".join("?" for _ in ids)
                drivers = tuple(
                    self._driver(r)
                    for r in self._all(
                        f"SELECT {DRIVER_COLS} FROM drivers WHERE driver_id IN ({marks}) "
                        "ORDER BY driver_id",
                        ids,
                    )
                )
                cards = tuple(
                    self._card(r)
                    for r in self._all(
                        f"SELECT {CARD_COLS} FROM cards WHERE driver_id IN ({marks}) "
                        "AND revoked_at IS NULL ORDER BY card_hash",
                        ids,
                    )
                )
        return SnapshotRows(reservations, drivers, cards)

    # ---- events -----------------------------------------------------------------------------

    def ingest_events(
        self,
        car_id: str,
        events: Sequence[EventIn],
        apply: Apply,
        *,
        unordered: frozenset[str] = UNORDERED,
    ) -> list[str]:
        """Keep and apply a car's events in one transaction; for each, what became of it:
        `duplicate` (its id was seen before: nothing happens), `parked` (an earlier event of the
        car is still missing), or the outcome of `apply` — its own, or of a later event it
        unblocked. Types in `unordered` (command results) are applied at once, whatever is
        missing. An unknown car is refused (NotFound) and nothing is kept."""
        with self._tx():
            return self._ingest_car(car_id, events, apply, unordered)

    def ingest_many(
        self,
        cars: Mapping[str, Sequence[EventIn]],
        apply: Apply,
        *,
        unordered: frozenset[str] = UNORDERED,
    ) -> dict[str, list[str] | NotFound]:
        """Several cars' events as `ingest_events`, in one transaction (one commit for all):
        each car's outcomes, or NotFound for a car this cloud does not have (nothing of it
        kept; the others go on). Cars are taken in the order of their ids, so two workers
        never wait on each other's cars the other way round."""
        outcomes: dict[str, list[str] | NotFound] = {}
        with self._tx():
            for car_id in sorted(cars):
                try:
                    outcomes[car_id] = self._ingest_car(car_id, cars[car_id], apply, unordered)
                except NotFound as exc:  # raised before anything of the car was written
                    outcomes[car_id] = exc
        return outcomes

    def _ingest_car(
        self,
        car_id: str,
        events: Sequence[EventIn],
        apply: Apply,
        unordered: frozenset[str],
    ) -> list[str]:
        outcomes: list[str] = []
        self._get_car(car_id, for_update=True)
        now = self._now()  # once the car is ours (another worker's turn on it may come first)
        cursor = self._event_cursor(car_id)
        done: list[tuple[str, str]] = []  # (event id, outcome) applied in this call
        for event in events:
            inserted = self._execute(
                f"INSERT INTO car_events ({EVENT_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL) ON CONFLICT (event_id) DO NOTHING",
                (event.event_id, car_id, event.seq, event.type, event.at,
                 self._json(event.data), self._time(now)),
            )  # fmt: skip
            if inserted.rowcount == 0:
                outcomes.append("duplicate")
                continue
            stored = CarEvent(
                event.event_id, car_id, event.seq, event.type, event.at, event.data, now,
                None, None,
            )  # fmt: skip
            if event.type in unordered:
                outcomes.append(self._apply_event(stored, apply, done))
            elif event.seq <= cursor:
                # Numbering went back (a unit whose store was replaced): apply in arrival order.
                log.warning(
                    "car %s: event %s has seq %d, at or below the %d already applied; "
                    "applied as it comes",
                    car_id, event.event_id, event.seq, cursor,
                )  # fmt: skip
                outcomes.append(self._apply_event(stored, apply, done))
            else:
                outcomes.append("parked")
        applied = self._walk(car_id, cursor, apply, now, done)
        return [
            applied.get(e.event_id, o) if o == "parked" else o
            for e, o in zip(events, outcomes, strict=True)
        ]

    def release_parked(self, apply: Apply, *, waited: dt.timedelta) -> list[str]:
        """Give up waiting for missing events: for every car with an event parked for longer
        than `waited`, apply its parked events from the first one on (logged with the gap).
        Returns the cars released."""
        older_than = self._now() - waited
        with self._tx(write=False):
            rows = self._all(
                "SELECT DISTINCT e.car_id FROM car_events e JOIN car_sync s "
                "ON s.car_id = e.car_id WHERE e.applied_at IS NULL AND e.received_at < ? "
                "AND e.seq > s.event_seq ORDER BY e.car_id",
                (self._time(older_than),),
            )
        released = []
        for (car_id,) in rows:
            now = self._now()
            with self._tx():
                self._get_car(car_id, for_update=True)
                cursor = self._event_cursor(car_id)
                first = self._one(
                    "SELECT min(seq) FROM car_events WHERE car_id = ? AND applied_at IS NULL "
                    "AND seq > ?",
                    (car_id, cursor),
                )
                if first is None or first[0] is None or int(first[0]) <= cursor + 1:
                    continue
                log.error(
                    "car %s: events %d..%d never arrived; applying from %d on",
                    car_id, cursor + 1, int(first[0]) - 1, int(first[0]),
                )  # fmt: skip
                self._walk(car_id, int(first[0]) - 1, apply, now, [])
                released.append(str(car_id))
        return released

    def _event_cursor(self, car_id: str) -> int:
        row = self._one("SELECT event_seq FROM car_sync WHERE car_id = ?", (car_id,))
        if row is None:
            raise NotFound("car", car_id)
        return int(row[0])

    def _walk(
        self, car_id: str, cursor: int, apply: Apply, now: dt.datetime, done: list[tuple[str, str]]
    ) -> dict[str, str]:
        """Apply the car's events that follow `cursor` without a gap; move the cursor; record
        the outcome of every event applied in this call (`done` holds those applied before)."""
        applied: dict[str, str] = {}
        earlier = {event_id for event_id, _ in done}  # applied, not yet marked in the table
        rows = self._all(
            f"SELECT {EVENT_COLS} FROM car_events WHERE car_id = ? AND seq > ? "
            "ORDER BY seq, received_at",
            (car_id, cursor),
        )
        for row in rows:
            event = self._car_event(row)
            if event.seq > cursor + 1:
                break
            if event.applied_at is None and event.event_id not in earlier:
                applied[event.event_id] = self._apply_event(event, apply, done)
            cursor = event.seq
        when = self._time(now)
        self._execute(
            "UPDATE car_sync SET event_seq = ?, seen_at = ? WHERE car_id = ?",
            (cursor, when, car_id),
        )
        self._execute_many(
            "UPDATE car_events SET applied_at = ?, outcome = ? WHERE event_id = ?",
            [(when, outcome, event_id) for event_id, outcome in done],
        )
        return applied

    def _apply_event(self, event: CarEvent, apply: Apply, done: list[tuple[str, str]]) -> str:
        """One event in a savepoint (unless its type writes nothing): its writes, or (refused)
        none of them. Its outcome joins `done`, recorded when the walk ends."""
        if not apply.writes(event.type):
            outcome = apply(event)
            done.append((event.event_id, outcome))
            return outcome
        self._execute("SAVEPOINT car_event")
        try:
            outcome = apply(event)
        except Exception as exc:
            self._execute("ROLLBACK TO SAVEPOINT car_event")
            self._execute("RELEASE SAVEPOINT car_event")
            known = exc if isinstance(exc, StoreError) else self._translate(exc)
            if known is not None and not isinstance(known, REFUSALS) and not _integrity(exc):
                raise known from exc  # not the event's fault: roll back, let it come again
            outcome = f"refused: {known or exc}"
            log.warning("car %s: event %s (%s) refused: %s", event.car_id, event.seq, event.type,
                        known or exc)  # fmt: skip
        else:
            self._execute("RELEASE SAVEPOINT car_event")
        done.append((event.event_id, outcome))
        return outcome

    def _car_event(self, row: Any) -> CarEvent:
        return CarEvent(
            row[0], row[1], int(row[2]), row[3], float(row[4]), dict(self._read_json(row[5])),
            self._read_time(row[6]), self._opt_time(row[7]), row[8],
        )  # fmt: skip

    def car_events(self, car_id: str | None = None, type: str | None = None) -> list[CarEvent]:
        """The events received, oldest first (by car, then sequence number)."""
        where, params = ["1 = 1"], []
        if car_id is not None:
            where.append("car_id = ?")
            params.append(car_id)
        if type is not None:
            where.append("type = ?")
            params.append(type)
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {EVENT_COLS} FROM car_events WHERE {' AND '.join(where)} "
                "ORDER BY car_id, seq, received_at",
                params,
            )
        return [self._car_event(r) for r in rows]

    # ---- state and presence -----------------------------------------------------------------

    def set_car_state(self, car_id: str, at: float, state: dict[str, Any]) -> bool:
        """Keep the car's state report unless a newer one is held; True if kept."""
        with self._tx():
            cur = self._execute(
                "UPDATE car_sync SET state = ?, state_at = ?, seen_at = ?, "
                f"status_seq = {_NEXT_STATUS} "
                "WHERE car_id = ? AND (state_at IS NULL OR state_at <= ?)",
                (self._json(state), at, self._time(self._now()), car_id, at),
            )
            if cur.rowcount == 0:
                self._event_cursor(car_id)  # NotFound for an unknown car
            return cur.rowcount > 0

    def set_car_online(self, car_id: str, online: bool, at: float | None) -> bool:
        """Keep the car's presence. A report without a time (a last will) always counts; one
        with a time only if it is newer than the last timed one. True if kept."""
        with self._tx():
            if at is None:
                cur = self._execute(
                    f"UPDATE car_sync SET online = ?, status_seq = {_NEXT_STATUS} WHERE car_id = ?",
                    (online, car_id),
                )
            else:
                cur = self._execute(
                    "UPDATE car_sync SET online = ?, online_at = ?, seen_at = ?, "
                    f"status_seq = {_NEXT_STATUS} "
                    "WHERE car_id = ? AND (online_at IS NULL OR online_at < ?)",
                    (online, at, self._time(self._now()), car_id, at),
                )
            if cur.rowcount == 0:
                self._event_cursor(car_id)
            return cur.rowcount > 0

    def car_status(self, car_id: str) -> CarStatus:
        with self._tx(write=False):
            row = self._one(f"SELECT {STATUS_COLS} FROM car_sync WHERE car_id = ?", (car_id,))
        if row is None:
            raise NotFound("car", car_id)
        return self._status(row)

    def list_car_status(self) -> list[CarStatus]:
        with self._tx(write=False):
            rows = self._all(f"SELECT {STATUS_COLS} FROM car_sync ORDER BY car_id")
        return [self._status(r) for r in rows]

    def _status(self, row: Any) -> CarStatus:
        return CarStatus(
            row[0], int(row[1]), self._opt_time(row[2]), int(row[3]), int(row[4]), int(row[5]),
            None if row[6] is None else dict(self._read_json(row[6])),
            None if row[7] is None else float(row[7]),
            None if row[8] is None else bool(row[8]),
            None if row[9] is None else float(row[9]),
            self._opt_time(row[10]),
        )  # fmt: skip

    # ---- commands ---------------------------------------------------------------------------

    def add_command(
        self,
        command_id: str,
        car_id: str,
        name: str,
        args: dict[str, Any],
        *,
        issued_at: float,
        expires_at: float,
    ) -> CommandRecord:
        with self._tx():
            self._get_car(car_id)
            self._execute(
                f"INSERT INTO car_commands ({COMMAND_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, NULL)",
                (command_id, car_id, name, self._json(args), issued_at, expires_at),
            )
        return CommandRecord(
            command_id, car_id, name, args, issued_at, expires_at, "pending", None, None
        )

    def answer_command(self, command_id: str, car_id: str, result: dict[str, Any]) -> str:
        """Record the car's result of a command: `answered` (the caller gets it), `late` (the
        caller was already told it timed out; kept for the operator), `duplicate` (a result
        was already recorded), `unknown` (no such command of this car)."""
        now = self._now()
        with self._tx():
            row = self._one(
                f"SELECT status, result FROM car_commands WHERE command_id = ? AND car_id = ?"
                f"{self._FOR_UPDATE}",
                (command_id, car_id),
            )
            if row is None:
                return "unknown"
            if row[1] is not None:
                return "duplicate"
            status = "answered" if row[0] == "pending" else row[0]
            self._execute(
                "UPDATE car_commands SET status = ?, result = ?, answered_at = ? "
                "WHERE command_id = ?",
                (status, self._json(result), self._time(now), command_id),
            )
            return "answered" if status == "answered" else "late"

    def list_commands(self, car_id: str | None = None) -> list[CommandRecord]:
        """The commands issued (to `car_id`, or to every car), oldest first."""
        where, params = equal_to(car_id=car_id)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._tx(write=False):
            rows = self._all(
                f"SELECT command_id FROM car_commands {clause}ORDER BY issued_at", params
            )
            return [self._get_command(r[0]) for r in rows]

    def get_command(self, command_id: str) -> CommandRecord:
        with self._tx(write=False):
            return self._get_command(command_id)

    def time_out_command(self, command_id: str) -> CommandRecord:
        """Mark a command still pending as timed out; the record as it is then (a result that
        came just in time stays answered)."""
        with self._tx():
            self._execute(
                "UPDATE car_commands SET status = 'timed_out' "
                "WHERE command_id = ? AND status = 'pending'",
                (command_id,),
            )
            return self._get_command(command_id)

    def _get_command(self, command_id: str) -> CommandRecord:
        row = self._one(f"SELECT {COMMAND_COLS} FROM car_commands WHERE command_id = ?",
                        (command_id,))  # fmt: skip
        if row is None:
            raise NotFound("command", command_id)
        return CommandRecord(
            row[0], row[1], row[2], dict(self._read_json(row[3])), float(row[4]), float(row[5]),
            row[6], None if row[7] is None else dict(self._read_json(row[7])),
            self._opt_time(row[8]),
        )  # fmt: skip

    # ---- notifications ----------------------------------------------------------------------

    def _notification(self, row: Any) -> Notification:
        return Notification(
            int(row[0]), row[1], row[2], row[3], None if row[4] is None else int(row[4]), row[5],
            self._read_time(row[6]), int(row[7]), self._read_time(row[8]),
            self._opt_time(row[9]), row[10],
        )  # fmt: skip

    def due_notifications(self, now: dt.datetime, limit: int = 50) -> list[Notification]:
        """Unsent notifications whose next attempt is due and that nobody is sending now."""
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {NOTIFICATION_COLS} FROM notifications WHERE sent_at IS NULL "
                "AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) "
                "ORDER BY next_attempt_at, notification_id LIMIT ?",
                (self._time(now), self._time(now), limit),
            )
        return [self._notification(r) for r in rows]

    def claim_notification(
        self, notification_id: int, now: dt.datetime, until: dt.datetime
    ) -> Notification | None:
        """Take a due notification for sending until `until` (one attempt more); None if it
        was sent or another worker holds it."""
        with self._tx():
            cur = self._execute(
                "UPDATE notifications SET claimed_until = ?, attempts = attempts + 1 "
                "WHERE notification_id = ? AND sent_at IS NULL AND next_attempt_at <= ? "
                "AND (claimed_until IS NULL OR claimed_until < ?)",
                (self._time(until), notification_id, self._time(now), self._time(now)),
            )
            if cur.rowcount == 0:
                return None
            return self._get_notification(notification_id)

    def notification_sent(self, notification_id: int, at: dt.datetime) -> None:
        with self._tx():
            self._execute(
                "UPDATE notifications SET sent_at = ?, claimed_until = NULL, last_error = NULL "
                "WHERE notification_id = ?",
                (self._time(at), notification_id),
            )

    def notification_failed(self, notification_id: int, retry_at: dt.datetime, error: str) -> None:
        with self._tx():
            self._execute(
                "UPDATE notifications SET next_attempt_at = ?, claimed_until = NULL, "
                "last_error = ? WHERE notification_id = ?",
                (self._time(retry_at), error[:500], notification_id),
            )

    def get_notification(self, notification_id: int) -> Notification:
        with self._tx(write=False):
            return self._get_notification(notification_id)

    def _get_notification(self, notification_id: int) -> Notification:
        row = self._one(
            f"SELECT {NOTIFICATION_COLS} FROM notifications WHERE notification_id = ?",
            (notification_id,),
        )
        if row is None:
            raise NotFound("notification", str(notification_id))
        return self._notification(row)

    def list_notifications(
        self,
        *,
        driver_id: str | None = None,
        kind: str | None = None,
        reservation_id: str | None = None,
        unsent: bool = False,
    ) -> list[Notification]:
        where, params = equal_to(driver_id=driver_id, kind=kind, reservation_id=reservation_id)
        where.insert(0, "1 = 1")
        if unsent:
            where.append("sent_at IS NULL")
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {NOTIFICATION_COLS} FROM notifications WHERE {' AND '.join(where)} "
                "ORDER BY notification_id",
                params,
            )
        return [self._notification(r) for r in rows]

    def recent_notifications(self, limit: int = 100) -> list[Notification]:
        """The mail outbox, newest first (the console's list, O-ADM-1)."""
        with self._tx(write=False):
            rows = self._all(
                f"SELECT {NOTIFICATION_COLS} FROM notifications "
                "ORDER BY notification_id DESC LIMIT ?",
                (limit,),
            )
        return [self._notification(r) for r in rows]

    def resend_notification(self, notification_id: int) -> int:
        """A copy of a mail, queued to go now (the driver lost it); the new one's id."""
        now = self._time(self._now())
        with self._tx():
            row = self._one(
                f"SELECT {NOTIFICATION_COLS} FROM notifications WHERE notification_id = ?",
                (notification_id,),
            )
            if row is None:
                raise NotFound("notification", str(notification_id))
            new = self._one(
                "INSERT INTO notifications (kind, driver_id, reservation_id, change_id, "
                "card_hash, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "RETURNING notification_id",
                (row[1], row[2], row[3], row[4], row[5], now, now),
            )
            return int(new[0])

    def get_change(self, change_id: int) -> ReservationChange:
        with self._tx(write=False):
            row = self._one(
                f"SELECT {CHANGE_COLS} FROM reservation_changes WHERE change_id = ?", (change_id,)
            )
        if row is None:
            raise NotFound("reservation change", str(change_id))
        return self._change(row)


def _integrity(exc: BaseException) -> bool:
    """The database refused the data itself (a CHECK, a foreign key): the event's fault."""
    return any(c.__name__ == "IntegrityError" for c in type(exc).__mro__)

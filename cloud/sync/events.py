"""What the cloud does with each event a car reports (SPEC S-SYNC-2), inside the transaction
that records it (`Store.ingest_events`): trips, invoices, penalties, cards and command results.

Each handler checks that the event is about the car that sent it (its reservation is that car's)
and returns the outcome recorded with the event; a refusal raises a store error (`InvalidValue`,
`NotFound`, `Conflict`) and the event's writes are rolled back, nothing else. The trip-end and
card mails are queued by the schema's triggers in the same transaction (N-MAIL-1).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from typing import Any

from cloud import alerts, model
from cloud.billing import bill_lines, trip_bill
from cloud.fees import is_late
from cloud.penalties import standing
from cloud.policy import Policy
from cloud.store import Conflict, InvalidValue, Store
from cloud.store import records as rec
from cloud.store.errors import DUPLICATE
from cloud.store.sync import CarEvent

log = logging.getLogger("cloud.sync")

# Events kept for the record only: the car acted on its own, the cloud has nothing to write.
KEPT = (
    "clock_skew",  # the car's clock is off: logged by the car, kept here for the operator
    "key_taken",
    "key_returned",
    "security_locked",
    "reunlocked",
    "forgotten_window_closed",
    "forgotten_unlocked",
    "card_denied",
    "end_refused",
    "registration_ended",
    "board_link",
)


class EventApplier:
    """The `apply` callback of `Store.ingest_events`. `answered` collects the command ids whose
    result was recorded, so the worker can wake their callers once the transaction commits."""

    def __init__(self, store: Store, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self.answered: list[str] = []
        self.handlers: dict[str, Callable[[CarEvent], str]] = {
            "trip_started": self.trip_started,
            "trip_ended": self.trip_ended,
            "card_registered": self.card_registered,
            "command_result": self.command_result,
            "overtime": self.overtime,
            "card_clone_suspected": self.card_clone_suspected,
            "update_step": self.update_step,
        }

    def writes(self, event_type: str) -> bool:
        return event_type in self.handlers or event_type in alerts.RULES

    def __call__(self, event: CarEvent) -> str:
        handler = self.handlers.get(event.type)
        if handler is None:
            outcome = "kept" if event.type in KEPT else f"kept: no handler for {event.type!r}"
        else:
            outcome = handler(event)
        if alerts.for_event(self.store, event):  # O-ALERT-1, in the same transaction
            outcome += "; alert raised"
        return outcome

    # ---- trips ------------------------------------------------------------------------------

    def _reservation(self, event: CarEvent) -> rec.Reservation:
        rid = _text(event.data, "reservation_id")
        row = self.store.get_reservation(rid)
        if row.car_id != event.car_id:
            raise InvalidValue(
                "data.reservation_id",
                f"reservation {rid} is of car {row.car_id}, not of {event.car_id}",
            )
        return row

    def trip_started(self, event: CarEvent) -> str:
        row = self._reservation(event)
        if row.status in ("in_use", "completed"):
            return "ignored: the trip had already started"
        self._start(event, row, event.at_time)
        return "applied: trip started"

    def _start(self, event: CarEvent, row: rec.Reservation, at: dt.datetime) -> None:
        by = event.data.get("by")
        readings = self._readings(event, "start")
        self.store.start_trip(
            row.reservation_id,
            started_at=at,
            started_by=by if by in ("card", "remote") else "card",
            **readings,
        )

    def trip_ended(self, event: CarEvent) -> str:
        row = self._reservation(event)
        if row.status == "completed":
            return "ignored: the trip had already ended"
        ended_at = _time(event.data, "ended_at", event.at_time)
        if row.status == "reserved":
            # Its trip_started never came (a gap given up on): the end carries the start.
            log.warning(
                "car %s: trip_ended of %s without its start", event.car_id, row.reservation_id
            )
            self._start(event, row, _time(event.data, "started_at", ended_at))
        car = self.store.get_car(row.car_id)
        policy = self.policy.for_kind(car.kind)
        late = is_late(policy, row.end, ended_at)
        overtime = max(0.0, (ended_at - row.end).total_seconds())
        self.store.end_trip(
            row.reservation_id,
            ended_at=ended_at,
            overtime_minutes=math.ceil(overtime / 60),
            unauthorised_extension=late,
            **self._readings(event, "end"),
        )
        bill = trip_bill(self.store, self.policy, row.reservation_id)
        self.store.add_invoice(row.member_id, bill_lines(bill), reservation_id=row.reservation_id)
        outcome = f"applied: trip ended, invoice {bill.total} yen"
        if late:
            outcome += ", unauthorised extension"
            self._penalties(row.member_id, ended_at)
        return outcome

    def _penalties(self, member_id: str, at: dt.datetime) -> None:
        """C-PEN-1: the limits follow from the recorded late returns whenever the rules look;
        a revocation is written on the member at once."""
        row = self.store.get_member(member_id)
        member = model.member_from(row, self.store.unauthorised_extensions(member_id))
        if standing(self.policy, member, at).revoked and row.status != "revoked":
            self.store.set_member_status(member_id, "revoked")
            log.warning("member %s revoked: unauthorised extensions (C-PEN-1)", member_id)

    def _readings(self, event: CarEvent, which: str) -> dict[str, Any]:
        """Odometer, fuel and position from the event, else from the car's last state report."""
        data = dict(event.data)
        if which == "start":
            state = self.store.car_status(event.car_id).state or {}
            for key in ("odometer_km", "fuel_pct", "position"):
                if data.get(key) is None:
                    data[key] = _find(state, key)
        position = data.get("position")
        lat = lon = None
        if isinstance(position, list | tuple) and len(position) == 2:
            lat, lon = position
        # A bad reading is dropped, not a reason to refuse the trip: the car did end it.
        return {
            "odometer_km": _reading(data.get("odometer_km"), 0, 10_000_000),
            "fuel_pct": _reading(data.get("fuel_pct"), 0, 100),
            "lat": _reading(lat, -90, 90),
            "lon": _reading(lon, -180, 180),
        }

    def overtime(self, event: CarEvent) -> str:
        row = self._reservation(event)
        log.info("car %s: overtime on %s (end %s)", event.car_id, row.reservation_id, row.end)
        return "kept: overtime"

    # ---- cards ------------------------------------------------------------------------------

    def card_registered(self, event: CarEvent) -> str:
        """U-CARD-2: the card tapped in registration mode, for the reservation's driver."""
        driver_id = _text(event.data, "driver_id")
        card = _text(event.data, "card")
        if event.data.get("reservation_id") is not None:
            row = self._reservation(event)
            if row.driver_id != driver_id:
                raise InvalidValue(
                    "data.driver_id",
                    f"reservation {row.reservation_id} is driver {row.driver_id}'s, "
                    f"not {driver_id}'s",
                )
        strong = event.data.get("strong", False)
        try:
            self.store.add_card(driver_id, card, strong=strong is True)
        except Conflict as exc:
            if exc.reason == DUPLICATE and self.store.get_card(card).driver_id == driver_id:
                return "ignored: the card was already registered to this driver"
            raise
        return "applied: card registered" + (" (strong)" if strong is True else "")

    def card_clone_suspected(self, event: CarEvent) -> str:
        log.warning(
            "car %s: a copy of card %s… was tapped (driver %s): check the card",
            event.car_id, str(event.data.get("card", ""))[:12], event.data.get("driver_id"),
        )  # fmt: skip
        return "kept: clone suspected"

    # ---- updates ----------------------------------------------------------------------------

    def update_step(self, event: CarEvent) -> str:
        """O-OTA-1: where the car is with the version a rollout offered it."""
        reason = event.data.get("reason") or ""
        return self.store.record_update_step(
            event.car_id, _text(event.data, "version"), _text(event.data, "step"), str(reason)
        )

    # ---- commands ---------------------------------------------------------------------------

    def command_result(self, event: CarEvent) -> str:
        """S-SYNC-3: the one result of a command goes to its caller."""
        command_id = _text(event.data, "command_id")
        ok = event.data.get("ok")
        if not isinstance(ok, bool):
            raise InvalidValue("data.ok", f"expected true or false, got {ok!r}")
        outcome = self.store.answer_command(command_id, event.car_id, dict(event.data))
        if outcome == "unknown":
            raise InvalidValue("data.command_id", f"no command {command_id} of car {event.car_id}")
        if outcome == "answered":
            self.answered.append(command_id)
        return f"applied: command result ({outcome})"


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"data.{key}", f"expected a text, got {value!r}")
    return value


def _time(data: dict[str, Any], key: str, default: dt.datetime) -> dt.datetime:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(f"data.{key}", f"expected seconds since the epoch, got {value!r}")
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidValue(f"data.{key}", f"out of range: {value!r}") from None


def _reading(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and low <= value <= high else None


def _find(state: dict[str, Any], key: str) -> Any:
    """A reading in a state report, at its top level or one level down (e.g. `sensors`)."""
    if key in state:
        return state[key]
    for value in state.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return None

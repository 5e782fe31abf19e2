"""The trip core: every rule of SPEC §1 for one car, with no clock and no I/O.

`TripCore.handle(input, now)` fires the deadlines that fell due up to `now` (each at its own time),
applies the input and returns the effects: outputs for the car, feedback, events to report and
command results. The core is the `transitions` model; the machines are declared in `machine.py`.

Outputs follow from the state: after every input the core compares what the state implies (doors,
immobiliser, reader LED) with what it last commanded and emits the difference. A lock or an
immobiliser-on is held back while the engine runs (X-SAFE-1) and goes out when it stops.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from transitions import EventData, Machine

from firmware import machine as m
from firmware import selfcheck
from firmware.bookings import (
    Bookings,
    Driver,
    Reservation,
    card_window,
    licence_valid,
    remote_window,
    within,
)
from firmware.config import TripConfig
from firmware.deadlines import Deadlines
from firmware.effects import (
    CommandResult,
    Effect,
    Hazard,
    Immobiliser,
    Lock,
    OfferConfig,
    OfferUpdate,
    Prompt,
    ReaderLed,
    Report,
    Unlock,
)
from firmware.inputs import (
    BoardLinkChanged,
    BookingsChanged,
    BrakeChanged,
    CardTapped,
    ClockMoved,
    ClockSkew,
    ConfigStep,
    DoorChanged,
    EngineChanged,
    Input,
    KeyChanged,
    LightsChanged,
    PositionChanged,
    RemoteCommand,
    UpdateStep,
    VehicleData,
)
from firmware.prompts import CHECK_PROMPTS
from firmware.state import SNAPSHOT_VERSION, Outputs, Registration, Trip, TripData, end_checks
from protocol.cards import card_hash

log = logging.getLogger(__name__)


class _SharedModelNoise(logging.Filter):
    """Both machines bind `trigger` to the one model; transitions warns of it on every build."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Skip binding of" not in record.getMessage()


logging.getLogger("transitions.core").addFilter(_SharedModelNoise())

# Deadline names; each security timer has a warning point `<name>_warning` before it.
DOOR, KEY, RETURN_KEY = "door", "key", "return_key"
SECURITY_TIMERS = (DOOR, KEY, RETURN_KEY)
WARNINGS = tuple(f"{t}_warning" for t in SECURITY_TIMERS)
FORGOTTEN, REGISTRATION, REMINDER, OVERTIME, READER = (
    "forgotten",
    "registration",
    "reminder",
    "overtime",
    "reader",
)

CommandOutcome = tuple[bool, str, dict[str, Any]]


class TripCore:
    """The model of the trip machine and the registration overlay."""

    state: str
    overlay: str

    def __init__(
        self,
        config: TripConfig,
        card_key: bytes,
        bookings: Bookings | None = None,
        snapshot: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.timing = config.timing
        self._card_key = card_key
        self.bookings = bookings or Bookings()
        if snapshot is not None:
            if snapshot.get("version") != SNAPSHOT_VERSION:
                raise ValueError(f"trip state: unknown snapshot version {snapshot.get('version')}")
            initial, overlay = snapshot["state"], snapshot["overlay"]
            self.data = TripData.from_dict(snapshot["data"])
        else:
            initial, overlay = m.IDLE, m.OVERLAY_OFF
            self.data = TripData()
        self.deadlines = Deadlines(self.data.deadlines)
        self._effects: list[Effect] = []
        self._now = self.data.last_time or 0.0
        self._horizon = self._now  # the time _fire_due is catching up to
        Machine(
            model=self,
            initial=initial,
            send_event=True,
            after_state_change="_after_transition",
            **m.machine_kwargs(),
        )
        Machine(model=self, initial=overlay, **m.overlay_kwargs())

    # ---- the public face -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to restore this core exactly (the bookings are stored apart)."""
        return {
            "version": SNAPSHOT_VERSION,
            "state": self.state,
            "overlay": self.overlay,
            "data": self.data.to_dict(),
        }

    def next_due(self) -> float | None:
        return self.deadlines.next_due()

    def handle(self, event: Input, now: float) -> list[Effect]:
        """Fire what fell due up to `now`, then apply `event` at `now`."""
        return self._at(now, lambda: self._dispatch(event))

    def restore(self, now: float) -> list[Effect]:
        """After a restart: fire what fell due while the unit was off, then re-apply every output
        the state implies (U-DATA-1), as if nothing had been commanded yet."""
        return self._at(now, lambda: setattr(self.data, "outputs", Outputs()))

    def _at(self, now: float, work: Callable[[], object]) -> list[Effect]:
        self._effects = []
        self._fire_due(now)
        self._now = max(now, self._now)
        self.data.last_time = self._now
        work()
        self._fire_due(self._now)  # a deadline the input set for this very instant
        self._settle()
        effects, self._effects = self._effects, []
        return effects

    def card_of(self, idm: bytes) -> str:
        return card_hash(self._card_key, idm)

    def end_checks(self) -> tuple[list[str], list[str]]:
        return end_checks(self.data.sensors, self.config.end_checks, self.config.station)

    # ---- transitions' callbacks ------------------------------------------------------------

    def key_out(self, event: EventData) -> bool:
        return not self.data.sensors.key_present

    def _after_transition(self, event: EventData) -> None:
        trip = self.data.trip
        kind = m.REPORTS[event.event.name]
        assert event.transition is not None
        data: dict[str, Any] = {"from": event.transition.source, "to": event.transition.dest}
        if trip is not None:
            data["reservation_id"] = trip.reservation_id
            data["driver_id"] = trip.driver_id
        data.update(event.kwargs)
        getattr(self, f"_enter_{self.state}")()
        self._report(kind, **data)

    def _enter_idle(self) -> None:
        self.data.trip = None
        self.deadlines.cancel(FORGOTTEN, REMINDER, OVERTIME, *SECURITY_TIMERS, *WARNINGS)

    def _enter_unlocked(self) -> None:
        # U-SEC-1 and U-SEC-2 start (or restart, U-SEC-4) at every unlock with the key in the box
        self.deadlines.cancel(RETURN_KEY, f"{RETURN_KEY}_warning")
        self._arm(DOOR, self.timing.door_timer, warn=False)
        self._arm(KEY, self.timing.key_timer)

    def _enter_in_use(self) -> None:
        assert self.data.trip is not None
        self.data.trip.key_taken = True
        self.data.trip.held = None
        self.deadlines.cancel(*SECURITY_TIMERS, *WARNINGS)

    def _enter_returning(self) -> None:
        self._arm(RETURN_KEY, self.timing.return_key_timer)

    def _enter_security_locked(self) -> None:
        assert self.data.trip is not None
        self.data.trip.held = None
        self.deadlines.cancel(*SECURITY_TIMERS, *WARNINGS)
        self._emit(Prompt("security_locked"))

    def _enter_forgotten_item_window(self) -> None:
        self.deadlines.cancel(REMINDER, OVERTIME, *SECURITY_TIMERS, *WARNINGS)
        self.deadlines.set(FORGOTTEN, self._now + self.timing.forgotten_window)

    # ---- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, event: Input) -> None:
        s = self.data.sensors
        match event:
            case CardTapped(idm=idm, authenticated=authenticated):
                self._tap(self.card_of(idm), authenticated)
            case DoorChanged(door=door, open=is_open):
                s.doors[door] = is_open
                self._door_changed(is_open)
            case KeyChanged(present=present, position=position):
                s.key_present, s.key_position = present, position
                self._key_changed()
            case EngineChanged(running=running):
                s.engine = running
                if not running:
                    self._engine_stopped()
            case BrakeChanged(on=on):
                s.brake = on
            case LightsChanged(on=on):
                s.lights = on
            case PositionChanged(lat=lat, lon=lon):
                s.position = [lat, lon]
            case VehicleData(odometer_km=odo, fuel_pct=fuel):
                s.odometer_km, s.fuel_pct = odo, fuel
            case RemoteCommand():
                self._command(event)
            case BookingsChanged(bookings=bookings):
                self._bookings_changed(bookings)
            case ClockMoved():
                pass
            case BoardLinkChanged(up=up, reason=reason, board=board):
                self._board_link(up, reason, board)
            case UpdateStep(step=step, details=details):
                self._report("update_step", step=step, **details)
            case ConfigStep(step=step, details=details):
                self._report("config_step", step=step, **details)
            case ClockSkew(offset=offset, source=source):
                # only reported: the unit keeps its clock (a wrong cloud must not move it)
                self._report("clock_skew", offset_s=round(offset, 3), source=source)

    def _board_link(self, up: bool, reason: str, board: dict[str, Any]) -> None:
        """The board link is back: whatever the board holds now (it may have restarted, or be a
        new board), every output the state implies goes out again, as after a restart
        (U-DATA-1). _settle() still holds a lock or immobiliser-on while the engine runs
        (X-SAFE-1). While the link is down nothing changes: the board holds its outputs."""
        if up:
            self.data.outputs = Outputs()
        self._report("board_link", up=up, reason=reason, board=board)

    # ---- deadlines ---------------------------------------------------------------------------

    def _fire_due(self, now: float) -> None:
        self._horizon = now
        while (due := self.deadlines.pop_due(now)) is not None:
            name, at = due
            self._now = max(at, self._now)
            self.data.last_time = self._now
            self._deadline(name)
            self._settle()

    def _deadline(self, name: str) -> None:
        trip = self.data.trip
        if name in SECURITY_TIMERS:
            self._security_timer(name)
        elif name in WARNINGS:
            timer = self.deadlines.get(name.removesuffix("_warning"))
            if timer is not None and timer > self._horizon:  # not when catching up past it
                self._emit(Prompt("security_lock_imminent"))
        elif name == FORGOTTEN and trip is not None and self.state == m.FORGOTTEN:
            if trip.forgotten_open:
                trip.forgotten_expired = True
                self._relock_after_window()
            else:
                self._go("close_window", reason="timeout")
        elif name == REGISTRATION and self.overlay == m.REGISTERING:
            self._end_registration("timeout")
        elif name == REMINDER and trip is not None:
            trip.last_reminder = self._now
            self._schedule_trip_points()
            following = self.deadlines.get(REMINDER)
            if following is None or following > self._horizon:  # only the latest when catching up
                self._emit(Prompt("return_reminder"))
        elif name == OVERTIME and trip is not None and not trip.overtime_reported:
            # U-USE-4: report and carry on; never lock or immobilise because time ran out
            trip.overtime_reported = True
            self._emit(Prompt("overtime"))
            self._report("overtime", reservation_id=trip.reservation_id, end=trip.end)
        # READER needs nothing: _settle() recomputes the LED and the next reader edge

    def _security_timer(self, name: str) -> None:
        trip = self.data.trip
        applies = (self.state == m.UNLOCKED and name in (DOOR, KEY)) or (
            self.state == m.RETURNING and name == RETURN_KEY
        )
        if trip is None or not applies:
            return
        if self.data.sensors.engine:
            trip.held = name  # X-SAFE-1: wait for the engine to stop
            return
        reasons = {DOOR: "no_door_opened", KEY: "key_not_taken", RETURN_KEY: "key_returned"}
        self._go("security_lock", reason=reasons[name])

    def _engine_stopped(self) -> None:
        trip = self.data.trip
        if trip is not None and trip.held is not None:
            self.deadlines.set(trip.held, self._now + self.timing.engine_stop_grace)
            trip.held = None
        if self.state == m.FORGOTTEN:
            self._relock_after_window()

    def _arm(self, name: str, after: int, warn: bool = True) -> None:
        self.deadlines.set(name, self._now + after)
        warning = f"{name}_warning"
        if warn and after > self.timing.security_warning:
            self.deadlines.set(warning, self._now + after - self.timing.security_warning)
        else:
            self.deadlines.cancel(warning)

    def _schedule_trip_points(self) -> None:
        """U-USE-2, U-USE-3, U-USE-4: the next reminder and the overtime point, from the end."""
        trip = self.data.trip
        if trip is None or self.state not in m.TRIP_STATES:
            self.deadlines.cancel(REMINDER, OVERTIME)
            return
        first = trip.end - self.timing.reminder_before_end
        step = max(self.timing.reminder_interval, 1)
        nxt = first
        if self._now > first:
            nxt = first + math.ceil((self._now - first) / step) * step
        if trip.last_reminder is not None and nxt <= trip.last_reminder:
            nxt = trip.last_reminder + step
        if nxt < trip.end:
            self.deadlines.set(REMINDER, nxt)
        else:
            self.deadlines.cancel(REMINDER)
        if trip.overtime_reported:
            self.deadlines.cancel(OVERTIME)
        else:
            self.deadlines.set(OVERTIME, trip.end)

    # ---- inputs ------------------------------------------------------------------------------

    def _door_changed(self, is_open: bool) -> None:
        if is_open and self.state == m.UNLOCKED:
            self.deadlines.cancel(DOOR)  # U-SEC-1: a door was opened in time
        if not is_open and self.state == m.FORGOTTEN:
            self._relock_after_window()

    def _key_changed(self) -> None:
        s = self.data.sensors
        if self.state in (m.UNLOCKED, m.RETURNING) and not s.key_present:
            self._go("take_key")  # U-SEC-5, U-SEC-3
        elif self.state == m.IN_USE and s.key_home:
            self._go("return_key")  # U-SEC-3

    def _relock_after_window(self) -> None:
        """U-FGT-4: the window ran out with the doors unlocked: lock once all are closed."""
        trip = self.data.trip
        s = self.data.sensors
        if trip is None or not (trip.forgotten_expired and trip.forgotten_open):
            return
        if s.doors_closed and not s.engine:
            trip.forgotten_open = False
            self._emit(Lock())
            self.data.outputs.doors = "locked"
            self._go("close_window", reason="timeout_locked")

    # ---- taps --------------------------------------------------------------------------------

    def _tap(self, card: str, authenticated: bool = False) -> None:
        if not authenticated and self.bookings.is_strong(card):
            return self._clone_suspected(card)
        if not authenticated and self.config.cards.strong_required:
            return self._deny(card, "strong_card_required")
        driver = self.bookings.driver_of_card(card)
        if self.overlay == m.REGISTERING:
            self._register(card, authenticated)
        elif self.state == m.IDLE:
            self._tap_start(card, driver)
        elif self.state in m.TRIP_STATES:
            self._tap_during_trip(card, driver)
        elif self.state == m.FORGOTTEN:
            self._tap_forgotten(card, driver)

    def _tap_start(self, card: str, driver: Driver | None) -> None:
        """U-START-2, U-START-3, U-LIC-1."""
        if driver is None:
            return self._deny(card, "unknown_card")
        mine = [r for r in self.bookings.of_driver(driver.id) if r.id not in self.data.consumed]
        reservation = next(
            (r for r in mine if within(card_window(r, self.timing), self._now)), None
        )
        if reservation is None:
            dark = any(within(remote_window(r, self.timing), self._now) for r in mine)
            return self._deny(card, "reader_window_closed" if dark else "no_reservation")
        if (unavailable := self._unavailable()) is not None:
            return self._deny(card, unavailable)
        if not licence_valid(driver, self._now, self.config.timezone):
            return self._deny(card, "licence_expired")
        self._flash("red_solid")
        self._start(reservation, by="card")

    def _tap_during_trip(self, card: str, driver: Driver | None) -> None:
        trip = self.data.trip
        assert trip is not None
        if driver is None or driver.id != trip.driver_id:
            return self._deny(card, "unknown_card" if driver is None else "car_in_use")
        if trip.key_taken and self.data.sensors.key_home and not trip.card_end:
            self._deny(card, "end_by_phone_only")  # U-START-2: started after the reader went dark
        elif self._card_end_intended():
            self._flash("red_solid")
            self._try_end(by="card")
        elif self._now < trip.end:
            self._flash("red_solid")
            self._reunlock(by="card")  # U-SEC-4: a tap during the reservation
        else:
            self._deny(card, "reservation_over")

    def _tap_forgotten(self, card: str, driver: Driver | None) -> None:
        trip = self.data.trip
        assert trip is not None
        if driver is None or driver.id != trip.driver_id or trip.forgotten_expired:
            return self._deny(card, "unknown_card" if driver is None else "not_allowed")
        ok, code, _ = self._forgotten_toggle(by="card")
        if not ok and code == "already_used":
            self._deny(card, code)  # a refused lock has already named what to fix

    def _deny(self, card: str, reason: str) -> None:
        """U-START-3, U-FB-3: the denial feedback, and nothing else changes."""
        phone = reason in ("reader_window_closed", "end_by_phone_only")
        prompt = "use_phone" if phone else "card_denied"
        self._flash("error")
        self._emit(Prompt(prompt))
        self._report("card_denied", card=card, reason=reason)

    def _clone_suspected(self, card: str) -> None:
        """A card registered as strong whose IDm came without its authentication: a copy of the
        IDm (or a reader fault). Denied in every state, and the operator is told."""
        driver = self.bookings.driver_of_card(card)
        self._flash("error")
        self._emit(Prompt("card_denied"))
        self._report("card_clone_suspected", card=card, driver_id=driver.id if driver else None)

    def _card_end_intended(self) -> bool:
        """U-END-2: with the key back at 返却 after use, the trip driver's tap means "end"."""
        trip = self.data.trip
        return bool(trip and trip.card_end and trip.key_taken and self.data.sensors.key_home)

    # ---- operations (shared by taps and remote commands) -------------------------------------

    def _start(self, reservation: Reservation, by: str) -> None:
        """U-START-4: hazard ×2, unlock, `unlocked`; the reservation is used."""
        fb = self.config.feedback
        card_open = within(card_window(reservation, self.timing), self._now)
        self.data.trip = Trip(
            reservation_id=reservation.id,
            driver_id=reservation.driver_id,
            started_at=self._now,
            started_by=by,
            card_end=by == "card" or card_open,
            end=reservation.end,
        )
        self.data.consumed.append(reservation.id)
        self.data.operator.unlocked = False  # the trip's own unlock takes over
        self._emit(Hazard(fb.hazard_start))
        self._unlock()
        self._emit(Prompt("start_ok"))
        self._go("start", by=by, start=reservation.start, end=reservation.end)
        self._schedule_trip_points()

    def _reunlock(self, by: str) -> None:
        self._unlock()
        self._go("reunlock", by=by)

    def _unlock(self) -> None:
        self._emit(Unlock())
        self.data.outputs.doors = "unlocked"

    def _try_end(self, by: str) -> CommandOutcome:
        """U-END-1..4: end if every blocking check holds; else name each failed check."""
        trip = self.data.trip
        assert trip is not None
        failed, warnings = self.end_checks()
        if failed:
            self._emit(Hazard(self.config.feedback.hazard_refused))
            self._emit(Prompt("end_refused"))
            for check in failed:
                self._emit(Prompt(CHECK_PROMPTS[check]))
            self._report("end_refused", reservation_id=trip.reservation_id, by=by, failed=failed)
            return False, "end_checks_failed", {"failed": failed, "warnings": warnings}
        self._end(by, warnings)
        return True, "ended", {"warnings": warnings}

    def _end(self, by: str, warnings: list[str], **more: Any) -> None:
        """U-END-3, U-END-5: lock, hazard ×1, immobilise, the forgotten-item window."""
        trip = self.data.trip
        assert trip is not None
        s = self.data.sensors
        trip.ended_at = self._now
        self._emit(Lock())
        self.data.outputs.doors = "locked"
        self._emit(Hazard(self.config.feedback.hazard_end))
        self._emit(Immobiliser(True))
        self.data.outputs.immobilised = True
        self._emit(Prompt("end_ok"))
        for check in warnings:
            self._emit(Prompt(CHECK_PROMPTS[check]))
        self._go(
            "end",
            by=by,
            started_at=trip.started_at,
            ended_at=self._now,
            overtime_s=max(0.0, self._now - trip.end),
            position=s.position,
            odometer_km=s.odometer_km,
            fuel_pct=s.fuel_pct,
            warnings=warnings,
            **more,
        )

    def _forgotten_toggle(self, by: str) -> CommandOutcome:
        """U-FGT-1, U-FGT-2, U-FGT-3: one unlock, then the lock that closes the window."""
        trip = self.data.trip
        assert trip is not None
        if trip.forgotten_open:
            return self._forgotten_lock(by)
        if trip.forgotten_used or trip.forgotten_expired:
            return False, "already_used", {}
        trip.forgotten_used = trip.forgotten_open = True
        self._unlock()
        self._emit(Prompt("forgotten_unlocked"))
        self._report("forgotten_unlocked", reservation_id=trip.reservation_id, by=by)
        return True, "unlocked", {}

    def _forgotten_lock(self, by: str) -> CommandOutcome:
        trip = self.data.trip
        assert trip is not None
        s = self.data.sensors
        failed = [n for n, bad in (("engine", s.engine), ("doors", not s.doors_closed)) if bad]
        if failed:  # X-SAFE-1: never lock on a running engine
            self._emit(Hazard(self.config.feedback.hazard_refused))
            for check in failed:
                self._emit(Prompt(CHECK_PROMPTS[check]))
            return (
                False,
                "doors_open" if failed == ["doors"] else "engine_running",
                {"failed": failed},
            )
        trip.forgotten_open = False
        self._emit(Lock())
        self.data.outputs.doors = "locked"
        self._emit(Prompt("forgotten_locked"))
        self._go("close_window", reason="locked", by=by)
        return True, "locked", {}

    # ---- card registration overlay -----------------------------------------------------------

    def _register(self, card: str, strong: bool = False) -> None:
        """U-CARD-2: the next card is registered to the reserving driver; only its IDm is read."""
        reg = self.data.registration
        assert reg is not None
        self._emit(Prompt("card_registered"))
        self._report(
            "card_registered",
            driver_id=reg.driver_id,
            reservation_id=reg.reservation_id,
            card=card,
            strong=strong,  # it passed the Lite-S mutual authentication: register it as strong
        )
        self._end_registration("registered")

    def _end_registration(self, reason: str) -> None:
        reg = self.data.registration
        self.data.registration = None
        self.deadlines.cancel(REGISTRATION)
        self._go("end_registration")
        if reason != "registered" and reg is not None:
            self._report("registration_ended", reservation_id=reg.reservation_id, reason=reason)

    # ---- remote commands ---------------------------------------------------------------------

    def _command(self, cmd: RemoteCommand) -> None:
        handlers: dict[str, Callable[[RemoteCommand], CommandOutcome]] = {
            "start": self._cmd_start,
            "end": self._cmd_end,
            "reunlock": self._cmd_reunlock,
            "forgotten_unlock": self._cmd_forgotten_unlock,
            "forgotten_lock": self._cmd_forgotten_lock,
            "register_card": self._cmd_register_card,
            "locate": self._cmd_locate,
            **self._operator_commands(),
        }
        handler = handlers.get(cmd.name)
        if handler is None:
            ok, code, data = False, "unknown_command", {"name": cmd.name}
        else:
            ok, code, data = handler(cmd)
        self._emit(CommandResult(cmd.id, ok, code, {"name": cmd.name, "at": self._now, **data}))

    def _trip_command(self, cmd: RemoteCommand) -> Trip | CommandOutcome:
        """The running trip a command is about, or why there is none."""
        trip = self.data.trip
        if trip is None or self.state not in m.TRIP_STATES:
            return False, "no_trip", {"state": self.state}
        rid = cmd.args.get("reservation_id")
        if rid is not None and rid != trip.reservation_id:
            return False, "not_current_trip", {"reservation_id": trip.reservation_id}
        return trip

    def _cmd_start(self, cmd: RemoteCommand) -> CommandOutcome:
        """U-START-5: a remote start is the tap without the card, from start−14 to the end."""
        if self.state != m.IDLE:
            return False, "car_busy", {"state": self.state}
        r = self.bookings.reservation(str(cmd.args.get("reservation_id", "")))
        if r is None:
            return False, "unknown_reservation", {}
        if r.id in self.data.consumed:
            return False, "already_used", {}
        if (unavailable := self._unavailable()) is not None:
            return False, unavailable, {}
        if not within(remote_window(r, self.timing), self._now):
            return False, "outside_window", {"opens": r.start - self.timing.start_early}
        driver = self.bookings.drivers.get(r.driver_id)
        if driver is None or not licence_valid(driver, self._now, self.config.timezone):
            return False, "licence_expired", {}
        self._start(r, by="remote")
        return True, "started", {"reservation_id": r.id}

    def _cmd_end(self, cmd: RemoteCommand) -> CommandOutcome:
        trip = self._trip_command(cmd)
        return trip if isinstance(trip, tuple) else self._try_end(by="remote")

    def _cmd_reunlock(self, cmd: RemoteCommand) -> CommandOutcome:
        """U-SEC-4: available throughout the trip, also when not security-locked."""
        trip = self._trip_command(cmd)
        if isinstance(trip, tuple):
            return trip
        self._reunlock(by="remote")
        return True, "unlocked", {"state": self.state}

    def _forgotten_command(self, cmd: RemoteCommand) -> Trip | CommandOutcome:
        trip = self.data.trip
        if self.state != m.FORGOTTEN or trip is None or trip.forgotten_expired:
            return False, "no_forgotten_window", {"state": self.state}
        rid = cmd.args.get("reservation_id")
        if rid is not None and rid != trip.reservation_id:
            return False, "not_current_trip", {}
        return trip

    def _cmd_forgotten_unlock(self, cmd: RemoteCommand) -> CommandOutcome:
        trip = self._forgotten_command(cmd)
        if isinstance(trip, tuple):
            return trip
        if trip.forgotten_open:
            return False, "already_unlocked", {}
        return self._forgotten_toggle(by="remote")

    def _cmd_forgotten_lock(self, cmd: RemoteCommand) -> CommandOutcome:
        trip = self._forgotten_command(cmd)
        if isinstance(trip, tuple):
            return trip
        if not trip.forgotten_open:
            return False, "not_unlocked", {}
        return self._forgotten_lock(by="remote")

    def _cmd_register_card(self, cmd: RemoteCommand) -> CommandOutcome:
        """U-CARD-1: from start−14 of the reservation and during its trip."""
        r = self.bookings.reservation(str(cmd.args.get("reservation_id", "")))
        if r is None:
            return False, "unknown_reservation", {}
        trip = self.data.trip
        if self.state not in m.OVERLAY_ALLOWED:
            return False, "not_now", {"state": self.state}
        ours = trip is not None and trip.reservation_id == r.id
        waiting = (
            self.state == m.IDLE
            and r.id not in self.data.consumed
            and within(remote_window(r, self.timing), self._now)
        )
        if not (ours or waiting):
            return False, "not_now", {"state": self.state}
        self.data.registration = Registration(r.id, r.driver_id)
        self.deadlines.set(REGISTRATION, self._now + self.timing.registration_timeout)
        if self.overlay == m.OVERLAY_OFF:
            self._go("begin_registration")
        self._emit(Prompt("registration"))
        return True, "registration_started", {"until": self.deadlines.get(REGISTRATION)}

    def _cmd_locate(self, cmd: RemoteCommand) -> CommandOutcome:
        return True, "located", {"position": self.data.sensors.position, "state": self.state}

    # ---- the operator's commands (O-CAR-1) -----------------------------------------------------

    def _operator_commands(self) -> dict[str, Callable[[RemoteCommand], CommandOutcome]]:
        return {
            "lock": self._cmd_lock,
            "unlock": self._cmd_unlock,
            "immobilise": self._cmd_immobilise,
            "release": self._cmd_release,
            "operator_end": self._cmd_operator_end,
            "service_mode": self._cmd_service_mode,
            "self_test": self._cmd_self_test,
            "update": self._cmd_update,
            "configure": self._cmd_configure,
        }

    def _cmd_update(self, cmd: RemoteCommand) -> CommandOutcome:
        """O-OTA-1: taken in any state, as the agent installs only when the car may (O-OTA-2);
        the runner says whether this unit has an update agent (`updates`)."""
        version = cmd.args["version"]
        if not cmd.args.get("updates"):
            return False, "updates_off", {"version": version}
        self._emit(OfferUpdate(version))
        return True, "update_offered", {"version": version}

    def _cmd_configure(self, cmd: RemoteCommand) -> CommandOutcome:
        """O-OTA-4: taken in any state; the agent applies it between trips."""
        version = cmd.args["version"]
        if not cmd.args.get("updates"):
            return False, "updates_off", {"version": version}
        self._emit(OfferConfig(version))
        return True, "config_offered", {"version": version}

    def reconfigure(self, config: TripConfig) -> None:
        """O-OTA-4: run with `config` from now on (only between trips: the caller checks)."""
        self.config, self.timing = config, config.timing

    def _unavailable(self) -> str | None:
        """Why no reservation may start now, by the operator's doing (None: it may)."""
        op = self.data.operator
        return "service_mode" if op.service_mode else "immobilised" if op.immobilised else None

    def _engine_refusal(self) -> CommandOutcome | None:
        """X-SAFE-1: no lock, immobiliser or end by the operator while the engine runs."""
        if self.data.sensors.engine:
            return False, "engine_running", {"failed": ["engine"]}
        return None

    def _cmd_lock(self, cmd: RemoteCommand) -> CommandOutcome:
        """Lock in any state. During a trip before the key is out (or back at 返却) it is the
        security lock, which the driver undoes with re-unlock (U-SEC-4); with the key out the
        driver's key opens the car as ever; in the forgotten-item window it closes the window."""
        if (refusal := self._engine_refusal()) is not None:
            return refusal
        if not self.data.sensors.doors_closed:
            doors = [d for d, is_open in self.data.sensors.doors.items() if is_open]
            return False, "doors_open", {"failed": ["doors"], "doors": doors}
        trip = self.data.trip
        if self.state == m.FORGOTTEN and trip is not None and trip.forgotten_open:
            return self._forgotten_lock(by="operator")
        if self.state in (m.UNLOCKED, m.RETURNING):
            self._go("security_lock", reason="operator")
            return True, "locked", {"state": self.state}
        self.data.operator.unlocked = False
        self._emit(Lock())  # also when the unit holds them locked: the operator asked now
        self.data.outputs.doors = "locked"
        self._report("operator_locked")
        return True, "locked", {"state": self.state}

    def _cmd_unlock(self, cmd: RemoteCommand) -> CommandOutcome:
        """Only an idle car: during a trip and its forgotten-item window the doors follow the
        driver's rules (X-SAFE-2). The engine stays immobilised; a lock or a start ends it."""
        if self.state != m.IDLE:
            return False, "car_busy", {"state": self.state}
        self.data.operator.unlocked = True
        self._report("operator_unlocked")
        return True, "unlocked", {"state": self.state}

    def _cmd_immobilise(self, cmd: RemoteCommand) -> CommandOutcome:
        if (refusal := self._engine_refusal()) is not None:
            return refusal
        self.data.operator.immobilised = True
        self._report("operator_immobilised")
        return True, "immobilised", {"state": self.state}

    def _cmd_release(self, cmd: RemoteCommand) -> CommandOutcome:
        """Lifts the operator's hold; the state's own immobiliser rule (U-SEC-5) still applies."""
        if (refusal := self._engine_refusal()) is not None:
            return refusal
        self.data.operator.immobilised = False
        self._report("operator_released")
        return True, "released", {"state": self.state}

    def _cmd_operator_end(self, cmd: RemoteCommand) -> CommandOutcome:
        """The trip ends on the driver's behalf (key lost, a check that cannot pass): lock,
        immobilise, the forgotten-item window, whatever the checks say; they are reported."""
        trip = self._trip_command(cmd)
        if isinstance(trip, tuple):
            return trip
        if (refusal := self._engine_refusal()) is not None:
            return refusal
        failed, warnings = self.end_checks()
        self._end("operator", warnings, failed=failed)
        return True, "ended", {"failed": failed, "warnings": warnings}

    def _cmd_service_mode(self, cmd: RemoteCommand) -> CommandOutcome:
        on = cmd.args.get("on")
        if not isinstance(on, bool):
            return False, "bad_args", {"field": "on", "reason": f"expected true or false: {on!r}"}
        if on and self.state != m.IDLE:
            return False, "car_busy", {"state": self.state}
        self.data.operator.service_mode = on
        self._report("service_mode", on=on)
        return True, "service_mode_on" if on else "service_mode_off", {}

    def self_check(self, parts: dict[str, Any]) -> dict[str, Any]:
        """The unit's own checks, with what the runner found of its parts (its adapters'
        status fields): the self-test's report, and a new version's start-up check (O-OTA-3)."""
        facts = selfcheck.Facts(
            self.data,
            self._target_doors(),
            self._target_immobilised(),
            self.next_due(),
            self._now,
            parts,
        )
        return selfcheck.run(facts)

    def _cmd_self_test(self, cmd: RemoteCommand) -> CommandOutcome:
        parts = cmd.args.get("parts")
        report = self.self_check(parts if isinstance(parts, dict) else {})
        self._report("self_test", passed=report["passed"])
        return report["passed"], "passed" if report["passed"] else "failed", {"report": report}

    # ---- bookings ----------------------------------------------------------------------------

    def _bookings_changed(self, bookings: Bookings) -> None:
        """U-CARD-4, U-USE-3: new data takes effect at once; an older snapshot is ignored."""
        if self.bookings.version and bookings.version <= self.bookings.version:
            log.info(
                "bookings version %s ignored: holding %s", bookings.version, self.bookings.version
            )
            return
        self.bookings = bookings
        known = {r.id for r in bookings.reservations}
        trip = self.data.trip
        self.data.consumed = [
            rid
            for rid in self.data.consumed
            if rid in known or (trip and trip.reservation_id == rid)
        ]
        r = bookings.reservation(trip.reservation_id) if trip is not None else None
        if trip is not None and r is not None and r.end != trip.end:
            trip.end = r.end
            if self._now < r.end:
                trip.overtime_reported = False
            self._schedule_trip_points()

    # ---- outputs -----------------------------------------------------------------------------

    def _settle(self) -> None:
        """Bring the outputs in line with the state, the overlay within its states, and the
        reader's next edge into the deadlines."""
        if self.overlay == m.REGISTERING and self.state not in m.OVERLAY_ALLOWED:
            self._end_registration("state")
        o = self.data.outputs
        engine = self.data.sensors.engine
        doors = self._target_doors()
        if doors is not None and doors != o.doors and not (doors == "locked" and engine):
            self._emit(Lock() if doors == "locked" else Unlock())
            o.doors = doors
        immobilise = self._target_immobilised()
        if immobilise != o.immobilised and not (immobilise and engine):
            self._emit(Immobiliser(immobilise))
            o.immobilised = immobilise
        led = self._target_led()
        if led != o.led:
            self._emit(ReaderLed(led))
            o.led = led
        self._schedule_reader()

    def _target_doors(self) -> str | None:
        trip = self.data.trip
        if self.state == m.IDLE:
            return "unlocked" if self.data.operator.unlocked else "locked"
        if self.state == m.SECURITY_LOCKED:
            return "locked"
        if self.state == m.UNLOCKED:
            return "unlocked"
        if self.state == m.FORGOTTEN:
            return "unlocked" if trip and trip.forgotten_open else "locked"
        return None  # U-USE-1: during the trip the doors are the driver's business

    def _target_immobilised(self) -> bool:
        """U-SEC-5: released only with the key out during a trip, and not under the operator's
        hold (O-CAR-1 `immobilise`)."""
        return self.state not in (m.IN_USE, m.RETURNING) or self.data.operator.immobilised

    def _target_led(self) -> str:
        """U-FB-1: what the reader shows now."""
        trip = self.data.trip
        if self.overlay == m.REGISTERING:
            return "green_yellow_blink"
        if self.state == m.IDLE:
            return "green_blink" if self._card_window_open() else "dark"
        if self.state == m.FORGOTTEN:
            assert trip is not None
            return "dark" if trip.forgotten_expired else "forgotten_blink"
        if self._card_end_intended() and not self.end_checks()[0]:
            return "orange_blink"
        return "dark"

    def _card_window_open(self) -> bool:
        if self._unavailable() is not None:
            return False  # a tap would be refused: the reader does not invite one
        return any(
            within(card_window(r, self.timing), self._now)
            for r in self.bookings.reservations
            if r.id not in self.data.consumed
        )

    def _schedule_reader(self) -> None:
        """The next instant a card window opens or closes, so the LED changes on time."""
        edges = [
            t
            for r in self.bookings.reservations
            if r.id not in self.data.consumed
            for t in card_window(r, self.timing)
            if t > self._now
        ]
        if edges:
            self.deadlines.set(READER, min(edges))
        else:
            self.deadlines.cancel(READER)

    # ---- helpers -----------------------------------------------------------------------------

    def _go(self, trigger: str, **kwargs: Any) -> None:
        """Fire a trigger of either machine (each adds its triggers to this model)."""
        getattr(self, trigger)(**kwargs)

    def _flash(self, pattern: str) -> None:
        """A passing reader pattern; _settle() then puts back what the state shows."""
        self._emit(ReaderLed(pattern))
        self.data.outputs.led = pattern

    def _emit(self, effect: Effect) -> None:
        self._effects.append(effect)

    def _report(self, kind: str, **data: Any) -> None:
        self._emit(Report(kind, {"at": self._now, "state": self.state, **data}))

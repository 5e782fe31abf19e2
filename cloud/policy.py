"""The booking policy: every rule and fee of SPEC §2 as data, loaded from TOML and validated.

An operator's rules differ from another's only in this data (SPEC §5): the car-sharing guide's
policy (`policies/carshare.toml`) is the default; the city parking service and the prefecture's
facility system are two more files read by the same engine. Every key is described in
`docs/policy.md`. A bad file is refused with the key and the reason, for example
`policy.fees.unit_yen: expected a positive integer, got -5`; unknown keys are errors too.

Per-kind rules: `[kinds.<name>]` overrides any of the booking, change, cancel, extension, fees,
overtime and fuel sections for cars (or facilities) of that kind; `Policy.for_kind` returns the
effective policy. A kind the file does not name follows the base rules.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

BUNDLED = ("carshare", "parking", "facility")
DAY = dt.timedelta(days=1)


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the key and the reason."""


class Duration(dt.timedelta):
    """A timedelta that remembers how the policy wrote it ("60m", "72h"), so that messages say
    "60分前" and "72時間" as the operator's guide does, not "1時間" and "3日"."""

    text: str

    def __new__(cls, value: dt.timedelta, text: str) -> Duration:
        self = super().__new__(cls, value.days, value.seconds, value.microseconds)
        self.text = text
        return self


def duration_parts(d: dt.timedelta) -> tuple[int, int, int, int]:
    """(days, hours, minutes, seconds) of `d` as the policy wrote it, or in the largest units."""
    if isinstance(d, Duration):
        match = _DURATION.match(d.text.strip())
        if match:
            p = tuple(int(g) if g else 0 for g in match.groups())
            return p[0], p[1], p[2], p[3]
    days, rest = divmod(int(d.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return days, hours, minutes, seconds


@dataclass(frozen=True)
class Deadline:
    """A point before a reservation's start, either a duration before the start instant
    (`before`) or the end of the local calendar day `days_before` days before the use date
    (the local date of the start). Both are inclusive: at exactly 60 minutes before, a
    `before = "60m"` deadline is still met; all of the day 7 days before the use date meets
    `days_before = 7`."""

    before: dt.timedelta | None = None
    days_before: int | None = None

    def met(self, start: dt.datetime, now: dt.datetime, zone: dt.tzinfo) -> bool:
        """Whether `now` is still at or before this deadline for a reservation at `start`."""
        if self.before is not None:
            return now <= start.astimezone(dt.UTC) - self.before
        assert self.days_before is not None
        use_date = start.astimezone(zone).date()
        return now.astimezone(zone).date() <= use_date - dt.timedelta(days=self.days_before)


@dataclass(frozen=True)
class Horizon:
    """C-HOR-1: a use date D opens for booking at local `opens_at` on D minus `months` calendar
    months and `days` days. `measure` says which date of the reservation must be open: that of
    its start, or of its last moment (so every day of a multi-day booking is open)."""

    months: int
    days: int
    opens_at: dt.time
    measure: Literal["start", "end"]

    def last_open_date(self, now: dt.datetime, zone: dt.tzinfo) -> dt.date:
        """The latest use date that may be booked at `now`."""
        local = now.astimezone(zone)
        last = add_months(local.date(), self.months) + dt.timedelta(days=self.days)
        return last if local.time() >= self.opens_at else last - DAY


@dataclass(frozen=True)
class Identity:
    """C-DRV-1: how long a member ID and a driver ID are; only driver IDs reserve."""

    member_id_length: int
    driver_id_length: int


@dataclass(frozen=True)
class Booking:
    """C-GRID-1, C-HOR-1, C-MAX-1, C-DRV-1, C-CAR-1, C-LIC-1."""

    grid: dt.timedelta
    min_length: dt.timedelta
    max_length: dt.timedelta
    horizon: Horizon
    allow_current_unit: bool  # the start may be the grid mark that began the current unit
    max_open_per_member: int | None  # None: no limit
    driver_exclusive: bool  # a driver cannot hold two overlapping reservations
    car_buffer: dt.timedelta
    check_licence: bool


@dataclass(frozen=True)
class Change:
    """C-CHG-1: how often a reservation's times may be changed, and until when."""

    max_changes: int | None  # None: no limit
    deadline: Deadline


@dataclass(frozen=True)
class CancelTier:
    """F-CAN-1: until `deadline` (None: at any time) a cancellation costs `percent` of the
    time fee."""

    percent: int
    deadline: Deadline | None


@dataclass(frozen=True)
class Cancel:
    """C-CAN-1: the first tier whose deadline is still met applies; when none does, the
    reservation can no longer be cancelled."""

    tiers: tuple[CancelTier, ...]


@dataclass(frozen=True)
class Extension:
    """C-EXT-1: how many extensions a trip may have; `step` is the "+15 minutes" button."""

    max_extensions: int
    step: dt.timedelta


@dataclass(frozen=True)
class PenaltyStep:
    """C-PEN-1: what the `count`-th unauthorised extension within the window does: revoke the
    membership, or limit the member to `max_open` open reservations for the next `months`
    calendar months."""

    count: int
    revoke: bool
    max_open: int | None
    months: int


@dataclass(frozen=True)
class Penalties:
    window_months: int
    steps: tuple[PenaltyStep, ...]


@dataclass(frozen=True)
class Pack:
    """F-TIME-1: a block of time sold at one price."""

    length: dt.timedelta
    yen: int


@dataclass(frozen=True)
class Fees:
    """F-TIME-1, F-DIST-1."""

    unit: dt.timedelta
    unit_yen: int
    packs: tuple[Pack, ...]
    per_km_yen: int
    km_rounding: Literal["down", "up", "nearest"]  # part kilometres


@dataclass(frozen=True)
class Overtime:
    """F-OVER-1: late returns. `packs` says whether the doubled time fee of the overtime may
    use packs (F-TIME-1) or is counted in plain units. A return within `grace` of the end is
    not late."""

    unit: dt.timedelta
    factor_percent: int
    packs: bool
    unauthorised_yen: int
    grace: dt.timedelta


@dataclass(frozen=True)
class Fuel:
    """F-FUEL-1: a refuel of at least `min_litres` with the car's fuel card earns the discount."""

    min_litres: float
    discount_yen: int


@dataclass(frozen=True)
class Policy:
    """One operator's booking rules and fees (SPEC §2)."""

    name: str
    timezone: str
    identity: Identity
    booking: Booking
    change: Change
    cancel: Cancel
    extension: Extension
    penalties: Penalties
    fees: Fees
    overtime: Overtime
    fuel: Fuel
    kinds: tuple[tuple[str, Policy], ...] = field(default=(), repr=False)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The operator's zone: "calendar month", "the day before", "daily at 00:00" are local."""
        return zoneinfo.ZoneInfo(self.timezone)

    def for_kind(self, kind: str) -> Policy:
        """The effective policy for a car (or facility) of `kind`; the base for other kinds."""
        for name, policy in self.kinds:
            if name == kind:
                return policy
        return self


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` moved by whole calendar months, clamped to the month's last day (Jan 31 + 1 = Feb
    28 or 29)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    next_first = dt.date(year + (month == 12), month % 12 + 1, 1)
    return dt.date(year, month, min(day.day, (next_first - DAY).day))


# --- loading -------------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_KIND_SECTIONS = ("booking", "change", "cancel", "extension", "fees", "overtime", "fuel")


class _Table:
    """One TOML table being read: every key read is checked, every key left over is refused.

    Keys that came from a `[kinds.<name>]` override are reported under that override's path,
    so an error points at the line the operator wrote.
    """

    def __init__(
        self,
        data: object,
        path: str,
        overlay: Mapping[str, Any] | None = None,
        overlay_path: str = "",
    ) -> None:
        if not isinstance(data, dict):
            raise PolicyError(f"{path.rstrip('.') or 'policy'}: expected a table, got {data!r}")
        self.data: dict[str, Any] = data
        self.path = path
        self.overlay = overlay
        self.overlay_path = overlay_path
        self.read: set[str] = set()

    def key(self, name: str) -> str:
        if self.overlay is not None and name in self.overlay:
            return f"{self.overlay_path}{name}"
        return f"{self.path}{name}"

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str) -> Any:
        self.read.add(name)
        if name not in self.data:
            raise PolicyError(f"{self.key(name)}: missing required key")
        return self.data[name]

    def table(self, name: str) -> _Table:
        value = self.raw(name)
        if self.overlay is not None and name in self.overlay:
            sub = self.overlay[name]
            if isinstance(sub, dict) and sub is not value:  # a section the kind changes in part
                return _Table(value, f"{self.path}{name}.", sub, f"{self.overlay_path}{name}.")
            return _Table(value, f"{self.overlay_path}{name}.")  # wholly the kind's
        return _Table(value, f"{self.path}{name}.")

    def tables(self, name: str) -> list[_Table]:
        value = self.raw(name)
        if not isinstance(value, list):
            raise PolicyError(f"{self.key(name)}: expected a list of tables, got {value!r}")
        return [_Table(item, f"{self.key(name)}[{i}].") for i, item in enumerate(value)]

    def integer(self, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(name)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        if ok and maximum is not None and value > maximum:
            ok = False
        if not ok:
            what = {0: "a non-negative integer", 1: "a positive integer"}.get(
                minimum, f"an integer of at least {minimum}"
            )
            if maximum is not None:
                what = f"an integer from {minimum} to {maximum}"
            raise PolicyError(f"{self.key(name)}: expected {what}, got {value!r}")
        return int(value)

    def number(self, name: str) -> float:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise PolicyError(f"{self.key(name)}: expected a non-negative number, got {value!r}")
        return float(value)

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        if not isinstance(value, bool):
            raise PolicyError(f"{self.key(name)}: expected true or false, got {value!r}")
        return value

    def string(self, name: str) -> str:
        value = self.raw(name)
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(f"{self.key(name)}: expected a non-empty string, got {value!r}")
        return value

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value not in options:
            raise PolicyError(f"{self.key(name)}: expected one of {options}, got {value!r}")
        return str(value)

    def duration(self, name: str, *, positive: bool = True) -> Duration:
        value = self.raw(name)
        match = _DURATION.match(value.strip()) if isinstance(value, str) else None
        if match is None or not any(match.groups()):
            raise PolicyError(
                f'{self.key(name)}: expected a duration such as "15m", "3h" or "1d", got {value!r}'
            )
        d, h, m, s = (int(g) if g else 0 for g in match.groups())
        result = dt.timedelta(days=d, hours=h, minutes=m, seconds=s)
        if positive and not result:
            raise PolicyError(f"{self.key(name)}: must be longer than 0, got {value!r}")
        return Duration(result, value)

    def time_of_day(self, name: str) -> dt.time:
        value = self.raw(name)
        match = _TIME_OF_DAY.match(value) if isinstance(value, str) else None
        if match is None:
            raise PolicyError(f'{self.key(name)}: expected a time such as "00:00", got {value!r}')
        return dt.time(int(match[1]), int(match[2]))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise PolicyError(f"{self.key(unknown[0])}: unknown key")


def _deadline(t: _Table) -> Deadline:
    if t.has("before") == t.has("days_before"):
        raise PolicyError(f"{t.path.rstrip('.')}: give exactly one of before or days_before")
    if t.has("before"):
        deadline = Deadline(before=t.duration("before", positive=False))
    else:
        deadline = Deadline(days_before=t.integer("days_before"))
    t.done()
    return deadline


def _multiple(t: _Table, name: str, value: dt.timedelta, of: dt.timedelta, of_key: str) -> None:
    if value % of:
        written = value.text if isinstance(value, Duration) else str(value)
        of_written = of.text if isinstance(of, Duration) else str(of)
        raise PolicyError(
            f"{t.key(name)}: must be a multiple of {of_key} ({of_written!r}), got {written!r}"
        )


def _booking(t: _Table) -> Booking:
    grid = t.duration("grid")
    if DAY % grid:
        raise PolicyError(f"{t.key('grid')}: must divide a day (24h) evenly, got {grid.text!r}")
    min_length = t.duration("min_length")
    max_length = t.duration("max_length")
    _multiple(t, "min_length", min_length, grid, t.key("grid"))
    _multiple(t, "max_length", max_length, grid, t.key("grid"))
    if max_length < min_length:
        raise PolicyError(f"{t.key('max_length')}: must not be shorter than {t.key('min_length')}")
    h = t.table("horizon")
    horizon = Horizon(
        months=h.integer("months"),
        days=h.integer("days"),
        opens_at=h.time_of_day("opens_at"),
        measure="start" if h.choice("measure", ("start", "end")) == "start" else "end",
    )
    h.done()
    booking = Booking(
        grid=grid,
        min_length=min_length,
        max_length=max_length,
        horizon=horizon,
        allow_current_unit=t.boolean("allow_current_unit"),
        max_open_per_member=(
            t.integer("max_open_per_member", minimum=1) if t.has("max_open_per_member") else None
        ),
        driver_exclusive=t.boolean("driver_exclusive"),
        car_buffer=t.duration("car_buffer", positive=False),
        check_licence=t.boolean("check_licence"),
    )
    t.done()
    return booking


def _cancel(t: _Table) -> Cancel:
    tiers: list[CancelTier] = []
    items = t.tables("tiers")
    for i, item in enumerate(items):
        percent = item.integer("percent", maximum=100)
        deadline = _deadline(item.table("deadline")) if item.has("deadline") else None
        item.done()
        if deadline is None and i != len(items) - 1:
            raise PolicyError(f"{item.path}deadline: only the last tier may have no deadline")
        if tiers and percent < tiers[-1].percent:
            raise PolicyError(f"{item.path}percent: must not be less than the tier before it")
        tiers.append(CancelTier(percent=percent, deadline=deadline))
    t.done()
    return Cancel(tiers=tuple(tiers))


def _penalties(t: _Table) -> Penalties:
    window = t.integer("window_months", minimum=1)
    steps: list[PenaltyStep] = []
    for item in t.tables("steps"):
        count = item.integer("count", minimum=1)
        if steps and count <= steps[-1].count:
            raise PolicyError(f"{item.path}count: steps must be in increasing order of count")
        revoke = item.boolean("revoke") if item.has("revoke") else False
        if revoke:
            step = PenaltyStep(count=count, revoke=True, max_open=None, months=0)
        else:
            step = PenaltyStep(
                count=count,
                revoke=False,
                max_open=item.integer("max_open"),
                months=item.integer("months", minimum=1),
            )
        item.done()
        steps.append(step)
    t.done()
    return Penalties(window_months=window, steps=tuple(steps))


def _km_rounding(value: str) -> Literal["down", "up", "nearest"]:
    return "up" if value == "up" else "nearest" if value == "nearest" else "down"


def _fees(t: _Table) -> Fees:
    unit = t.duration("unit")
    packs: list[Pack] = []
    for item in t.tables("packs"):
        length = item.duration("length")
        _multiple(item, "length", length, unit, t.key("unit"))
        packs.append(Pack(length=length, yen=item.integer("yen", minimum=1)))
        item.done()
    fees = Fees(
        unit=unit,
        unit_yen=t.integer("unit_yen", minimum=1),
        packs=tuple(packs),
        per_km_yen=t.integer("per_km_yen"),
        km_rounding=_km_rounding(t.choice("km_rounding", ("down", "up", "nearest"))),
    )
    t.done()
    return fees


def _sections(root: _Table, name: str, timezone: str, identity: Identity, p: Penalties) -> Policy:
    change_t = root.table("change")
    change = Change(
        max_changes=change_t.integer("max_changes") if change_t.has("max_changes") else None,
        deadline=_deadline(change_t.table("deadline")),
    )
    change_t.done()
    booking_t = root.table("booking")
    booking = _booking(booking_t)
    ext_t = root.table("extension")
    extension = Extension(
        max_extensions=ext_t.integer("max_extensions"), step=ext_t.duration("step")
    )
    _multiple(ext_t, "step", extension.step, booking.grid, booking_t.key("grid"))
    ext_t.done()
    over_t = root.table("overtime")
    overtime = Overtime(
        unit=over_t.duration("unit"),
        factor_percent=over_t.integer("factor_percent"),
        packs=over_t.boolean("packs"),
        unauthorised_yen=over_t.integer("unauthorised_yen"),
        grace=over_t.duration("grace", positive=False),
    )
    over_t.done()
    fuel_t = root.table("fuel")
    fuel = Fuel(min_litres=fuel_t.number("min_litres"), discount_yen=fuel_t.integer("discount_yen"))
    fuel_t.done()
    return Policy(
        name=name,
        timezone=timezone,
        identity=identity,
        booking=booking,
        change=change,
        cancel=_cancel(root.table("cancel")),
        extension=extension,
        penalties=p,
        fees=_fees(root.table("fees")),
        overtime=overtime,
        fuel=fuel,
    )


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """The base sections with a kind's keys put over them: each key the kind names replaces the
    base value whole (a deadline or a list of tiers is never mixed from two sources)."""
    merged = dict(base)
    for section, keys in over.items():
        old = merged.get(section)
        merged[section] = (
            {**old, **keys} if isinstance(old, dict) and isinstance(keys, dict) else keys
        )
    return merged


def policy_from_dict(data: Mapping[str, Any]) -> Policy:
    """A policy from a parsed TOML document; raises PolicyError naming the key and the reason."""
    root = _Table(dict(data), "policy.")
    name = root.string("name")
    timezone = root.string("timezone")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"policy.timezone: unknown time zone {timezone!r}") from None
    ident_t = root.table("identity")
    identity = Identity(
        member_id_length=ident_t.integer("member_id_length", minimum=1),
        driver_id_length=ident_t.integer("driver_id_length", minimum=1),
    )
    ident_t.done()
    if identity.member_id_length == identity.driver_id_length:
        raise PolicyError(
            "policy.identity.driver_id_length: must differ from member_id_length, so that a "
            "member ID can never pass for a driver ID"
        )
    penalties = _penalties(root.table("penalties"))
    base = _sections(root, name, timezone, identity, penalties)
    kinds: list[tuple[str, Policy]] = []
    if root.has("kinds"):
        kinds_t = root.table("kinds")
        for kind in sorted(kinds_t.data):
            kinds_t.read.add(kind)
            kind_path = f"policy.kinds.{kind}."
            over = kinds_t.data[kind]
            if not isinstance(over, dict):
                raise PolicyError(f"{kind_path.rstrip('.')}: expected a table, got {over!r}")
            for section in over:
                if section not in _KIND_SECTIONS:
                    raise PolicyError(
                        f"{kind_path}{section}: cannot be set per kind (only {_KIND_SECTIONS})"
                    )
            merged = _merge({s: data[s] for s in _KIND_SECTIONS}, over)
            kinds.append(
                (
                    kind,
                    _sections(
                        _Table(merged, "policy.", over, kind_path),
                        name,
                        timezone,
                        identity,
                        penalties,
                    ),
                )
            )
        kinds_t.done()
    # every key of the file must have been read by now
    root.done()
    return Policy(
        name=base.name,
        timezone=base.timezone,
        identity=base.identity,
        booking=base.booking,
        change=base.change,
        cancel=base.cancel,
        extension=base.extension,
        penalties=base.penalties,
        fees=base.fees,
        overtime=base.overtime,
        fuel=base.fuel,
        kinds=tuple(kinds),
    )


def parse_policy(text: str) -> Policy:
    """A policy from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy: not valid TOML: {exc}") from None
    return policy_from_dict(data)


def load_policy(path: str | Path) -> Policy:
    """A policy from a TOML file; the error names the file, the key and the reason."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc}") from None
    try:
        return parse_policy(text)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


@functools.cache
def bundled_policy(name: str = "carshare") -> Policy:
    """One of the policies shipped in `cloud/policies/`: carshare (the default), parking,
    facility."""
    if name not in BUNDLED:
        raise PolicyError(f"policy: no bundled policy named {name!r} (have {BUNDLED})")
    text = (importlib.resources.files("cloud") / "policies" / f"{name}.toml").read_text("utf-8")
    return parse_policy(text)


def default_policy() -> Policy:
    """The car-sharing guide's policy."""
    return bundled_policy("carshare")

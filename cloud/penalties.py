"""Penalties for unauthorised extensions (SPEC C-PEN-1): what a member's history of late returns
means for the member now.

Each step of `penalties.steps` fires on the `count`-th unauthorised extension within
`penalties.window_months` (the window ends at that extension and reaches back that many calendar
months, the instant exactly a window earlier excluded). A limit step restricts the member to
`max_open` open reservations for the `months` calendar months (local) after the month of the
extension; a revoke step revokes the membership for good. A limit applies to a booking when the
booking is made during a restricted month or starts in one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cloud.fees import is_late
from cloud.model import Member, Reservation, aware
from cloud.policy import Policy, add_months


@dataclass(frozen=True)
class Limit:
    """At most `max_open` open reservations on the local days from `first` to before `until`."""

    max_open: int
    first: dt.date
    until: dt.date

    def covers(self, day: dt.date) -> bool:
        return self.first <= day < self.until


@dataclass(frozen=True)
class Standing:
    """A member's penalties as of some instant."""

    revoked: bool
    offences_in_window: int  # unauthorised extensions within the window ending now
    limits: tuple[Limit, ...]  # every restriction the history imposes, past and coming

    def limit_for(self, days: tuple[dt.date, ...]) -> Limit | None:
        """The tightest limit covering any of `days`."""
        covering = [lim for lim in self.limits if any(lim.covers(d) for d in days)]
        return min(covering, key=lambda lim: (lim.max_open, lim.until), default=None)


def unauthorised_extension_at(policy: Policy, reservation: Reservation) -> dt.datetime | None:
    """The instant to record in `Member.unauthorised_extensions` for a returned reservation:
    its (extended) end, when the car came back late without an extension (C-PEN-1); None when
    it was not late."""
    if reservation.returned_at is None:
        return None
    return reservation.end if is_late(policy, reservation.end, reservation.returned_at) else None


def _window_start(policy: Policy, at: dt.datetime) -> dt.datetime:
    local = at.astimezone(policy.zone)
    back = add_months(local.date(), -policy.penalties.window_months)
    return dt.datetime.combine(back, local.timetz()).replace(tzinfo=policy.zone)


def standing(policy: Policy, member: Member, now: dt.datetime) -> Standing:
    """C-PEN-1: whether the member is revoked and which open-reservation limits apply, from the
    unauthorised extensions recorded up to `now`."""
    aware(now, "now")
    for t in member.unauthorised_extensions:
        aware(t, "Member.unauthorised_extensions")
    history = sorted(t for t in member.unauthorised_extensions if t <= now)
    revoked = member.revoked
    limits: list[Limit] = []
    for i, at in enumerate(history):
        since = _window_start(policy, at)
        count = sum(1 for t in history[: i + 1] if t > since)
        for step in policy.penalties.steps:
            if step.revoke and count >= step.count:
                revoked = True
            elif not step.revoke and count == step.count and step.max_open is not None:
                month = at.astimezone(policy.zone).date().replace(day=1)
                limits.append(
                    Limit(
                        step.max_open,
                        add_months(month, 1),
                        add_months(month, 1 + step.months),
                    )
                )
    since_now = _window_start(policy, now)
    in_window = sum(1 for t in history if t > since_now)
    return Standing(revoked=revoked, offences_in_window=in_window, limits=tuple(limits))

"""The console's alerts (SPEC O-ALERT-1): what raises one, and the watch that mails them.

- From a car's events, in the same transaction that applies them (`for_event`, called by the
  sync's event applier): a security lock, a suspected card clone, overtime, a board link lost,
  a trip whose end keeps failing (the third refused end of one reservation). Each alert has a
  key naming its cause, so a repeated event raises nothing new.
- A command the car did not answer: raised by the console (`cloud.console`).
- A car offline longer than `offline_after`: found by `AlertWatch`, every `interval`, once per
  outage (the key holds the last contact).
- `AlertWatch` also mails each new alert to the operator's address (with --smtp and
  --alert-mail), claiming it first, so two cloud nodes never both send it; a failed send gives
  the claim back for the next round.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import threading
from collections.abc import Callable
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from cloud.clock import Clock, system_clock
from cloud.store import Store, StoreError
from cloud.store.sync import CarEvent

log = logging.getLogger(__name__)

END_FAILURES = 3  # refused ends of one reservation before "a trip whose end keeps failing"


def _rid(event: CarEvent) -> str:
    return str(event.data.get("reservation_id") or "")


def _security_locked(event: CarEvent, store: Store) -> tuple[str, str] | None:
    why = event.data.get("reason", "")
    return f"security_locked:{event.event_id}", f"{event.car_id} locked itself ({why})"


def _clone(event: CarEvent, store: Store) -> tuple[str, str] | None:
    card = str(event.data.get("card", ""))[:12]
    who = event.data.get("driver_id")
    return f"card_clone:{event.event_id}", f"a copy of card {card}… (driver {who}) was tapped"


def _overtime(event: CarEvent, store: Store) -> tuple[str, str] | None:
    return f"overtime:{_rid(event)}", f"{event.car_id}: reservation {_rid(event)} is overtime"


def _board_link(event: CarEvent, store: Store) -> tuple[str, str] | None:
    if event.data.get("up") is not False:
        return None
    why = event.data.get("reason", "")
    return f"board_link:{event.event_id}", f"{event.car_id}: the link to its board was lost ({why})"


def _end_refused(event: CarEvent, store: Store) -> tuple[str, str] | None:
    refused = [
        e for e in store.car_events(event.car_id, "end_refused")
        if _rid(e) == _rid(event)
    ]  # fmt: skip
    if len(refused) < END_FAILURES:
        return None
    failed = ", ".join(map(str, event.data.get("failed", [])))
    return (
        f"end_failing:{_rid(event)}",
        f"{event.car_id}: the end of reservation {_rid(event)} was refused {len(refused)} times "
        f"({failed})",
    )


RULES: dict[str, tuple[str, Callable[[CarEvent, Store], tuple[str, str] | None]]] = {
    "security_locked": ("security_locked", _security_locked),
    "card_clone_suspected": ("card_clone_suspected", _clone),
    "overtime": ("overtime", _overtime),
    "board_link": ("board_link_lost", _board_link),
    "end_refused": ("end_failing", _end_refused),
}


def for_event(store: Store, event: CarEvent) -> bool:
    """Raise the alert this event calls for, if any; True if a new one was raised."""
    rule = RULES.get(event.type)
    if rule is None:
        return False
    kind, make = rule
    found = make(event, store)
    return found is not None and store.raise_alert(found[0], kind, event.car_id, found[1])


class AlertWatch:
    """Per cloud node: offline cars become alerts; new alerts go by mail to the operator."""

    def __init__(
        self,
        store: Store,
        *,
        offline_after: dt.timedelta = dt.timedelta(minutes=10),
        send: Callable[[EmailMessage], Any] | None = None,
        to: str | None = None,
        sender: str = "kagi <noreply@localhost>",
        clock: Clock = system_clock,
        interval: float = 5.0,
    ) -> None:
        self.store = store
        self.offline_after = offline_after
        self.send = send
        self.to = to
        self.sender = sender
        self.clock = clock
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_offline(self) -> int:
        """Raise an alert for each car silent longer than `offline_after`; how many new."""
        now = self.clock()
        raised = 0
        for row in self.store.fleet():
            if row.online or row.seen_at is None or now - row.seen_at < self.offline_after:
                continue
            minutes = int((now - row.seen_at).total_seconds() // 60)
            raised += self.store.raise_alert(
                f"car_offline:{row.car_id}:{row.seen_at.isoformat()}",
                "car_offline",
                row.car_id,
                f"{row.car_id} has been offline for {minutes} min (last contact "
                f"{row.seen_at.isoformat(timespec='seconds')})",
            )
        return raised

    def mail_new(self) -> int:
        """Mail each alert not mailed yet; how many went."""
        if self.send is None or self.to is None:
            return 0
        sent = 0
        for alert in self.store.alerts_to_mail():
            if not self.store.alert_mailed(alert.alert_id):
                continue  # another node has it
            message = EmailMessage()
            message["From"], message["To"] = self.sender, self.to
            where = f" {alert.car_id}" if alert.car_id else ""
            message["Subject"] = f"[kagi] {alert.kind}{where}"
            message.set_content(
                f"{alert.message}\n\n{alert.raised_at.isoformat(timespec='seconds')}\n"
                "Acknowledge it on the console: /console/alerts\n"
            )
            try:
                self.send(message)
            except (smtplib.SMTPException, OSError) as exc:
                log.warning("alert %d: mail failed (%s); next round", alert.alert_id, exc)
                self.store.alert_unmailed(alert.alert_id)
                break
            sent += 1
        return sent

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="kagi-alerts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_offline()
                self.mail_new()
            except StoreError as exc:
                log.error("alerts: the store failed (%s); trying again", exc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""Notifications to drivers by e-mail (SPEC N-MAIL-1), from the store's outbox over SMTP.

The outbox (`notifications`) is filled by the schema's triggers in the same transaction as what
it tells of: a reservation made, changed, cancelled or extended, a trip ended (the car's
`trip_ended` applied: 「利用終了受付」), a card registered (「認証カードIDのご案内」). So a trip-end
mail exists exactly when the trip ended. `Mailer` renders each from the store and sends it with
`smtplib`; a failure leaves it in the outbox for a later attempt (backoff from `retry_first` up
to `retry_max`), so nothing is lost while the mail server is down. A worker claims a mail before
sending it, so several workers send each one once; its Message-ID is fixed, so a receiving server
can drop the copy a crash between sending and recording could cause.

    mailer = Mailer(store, policy, SmtpConfig.from_url("smtp://mail.example.jp:587?starttls=1"))
    with mailer:          # a thread delivering what is due every `interval` seconds
        ...
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

from cloud.clock import Clock, system_clock
from cloud.decision import duration_en, duration_ja
from cloud.fees import reservation_fee
from cloud.policy import Policy
from cloud.store import NotFound, Store, StoreError
from cloud.store.sync import Notification

log = logging.getLogger("cloud.notify")

KINDS = (
    "reservation_created",
    "reservation_changed",
    "reservation_cancelled",
    "reservation_extended",
    "trip_ended",
    "card_registered",
)
SUBJECTS = {
    "reservation_created": ("予約受付のお知らせ", "Reservation confirmed"),
    "reservation_changed": ("予約変更のお知らせ", "Reservation changed"),
    "reservation_cancelled": ("予約取消のお知らせ", "Reservation cancelled"),
    "reservation_extended": ("延長受付のお知らせ", "Reservation extended"),
    "trip_ended": ("利用終了受付", "Trip ended"),
    "card_registered": ("認証カードIDのご案内", "Your registered card"),
}


@dataclass(frozen=True)
class SmtpConfig:
    """The mail server: `smtp://[USER:PASSWORD@]HOST[:PORT][?starttls=1&from=ADDRESS]` or
    `smtps://…` (TLS from the start)."""

    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "kagi <noreply@localhost>"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"smtp: expected smtp://HOST[:PORT] or smtps://…, got {url!r}")
        query = parse_qs(parts.query)
        ssl = parts.scheme == "smtps"
        try:
            port = parts.port or (465 if ssl else 25)
        except ValueError:
            raise ValueError(f"smtp: bad port in {url!r}") from None
        return cls(
            host=parts.hostname,
            port=port,
            sender=query.get("from", [cls.sender])[0],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls=query.get("starttls", ["0"])[0] in ("1", "true", "yes"),
            ssl=ssl,
        )

    def connect(self) -> smtplib.SMTP:
        server: smtplib.SMTP
        if self.ssl:
            server = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout)
        else:
            server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            server.starttls()
        if self.username:
            server.login(self.username, self.password or "")
        return server

    def send(self, message: EmailMessage) -> None:
        """One message on its own connection (the operator's alerts, a few a day)."""
        server = self.connect()
        try:
            server.send_message(message)
        finally:
            _quietly_close(server)


# ---- rendering ---------------------------------------------------------------------------------


def render(store: Store, policy: Policy, n: Notification, sender: str) -> EmailMessage:
    """The mail of notification `n` (Japanese first, then English), from the store as it is."""
    driver = store.get_driver(n.driver_id)
    zone = policy.zone

    def when(t: dt.datetime | None) -> str:
        return "-" if t is None else t.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    # each line: (Japanese, English); the first is the message, the others its details
    lines: list[tuple[str, str]]
    if n.kind == "card_registered":
        card = store.get_card(n.card_hash or "")
        lines = [
            (
                "次の認証カードを登録しました。"
                + ("（FeliCa Lite-S 認証付き）" if card.strong else ""),
                "This card was registered to you"
                + (" (FeliCa Lite-S, authenticated)." if card.strong else "."),
            ),
            (f"認証カードID: {card.card_hash[:16]}", f"Card ID: {card.card_hash[:16]}"),
            (f"登録日時: {when(card.registered_at)}", f"Registered: {when(card.registered_at)}"),
            (
                "お心当たりのない場合は、すぐにご連絡ください。",
                "If this was not you, tell us at once.",
            ),
        ]
    else:
        lines = _reservation_lines(store, policy, n, when)
    ja_subject, en_subject = SUBJECTS[n.kind]
    (ja_first, en_first), details = lines[0], lines[1:]
    ja = [f"{driver.name} 様", "", ja_first, *(f"  {j}" for j, _ in details)]
    en = [f"Dear {driver.name},", "", en_first, *(f"  {e}" for _, e in details)]
    msg = EmailMessage()
    msg["Subject"] = f"【kagi】{ja_subject} / {en_subject}"
    msg["From"] = sender
    msg["To"] = formataddr((driver.name, driver.email))
    msg["Date"] = formatdate(n.created_at.timestamp(), localtime=False)
    msg["Message-ID"] = f"<kagi-notification-{n.notification_id}-{n.kind}@{_domain(sender)}>"
    msg.set_content("\n".join([*ja, "", "-" * 40, "", *en, ""]))
    return msg


def _reservation_lines(
    store: Store, policy: Policy, n: Notification, when: Callable[[dt.datetime | None], str]
) -> list[tuple[str, str]]:
    r = store.get_reservation(n.reservation_id or "")
    car = store.get_car(r.car_id)
    station = store.get_station(car.station_id)
    change = None if n.change_id is None else store.get_change(n.change_id)
    head = [
        (f"予約番号: {r.reservation_id}", f"Reservation: {r.reservation_id}"),
        (f"車両: {car.name or car.car_id}（{station.name}）",
         f"Car: {car.name or car.car_id} ({station.name})"),
    ]  # fmt: skip
    if n.kind == "reservation_created":
        fee = reservation_fee(policy.for_kind(car.kind), r.start, r.end).yen
        return [
            ("ご予約を承りました。", "Your reservation is confirmed."),
            *head,
            (f"利用開始: {when(r.start)}", f"Start: {when(r.start)}"),
            (f"利用終了: {when(r.end)}", f"End: {when(r.end)}"),
            (f"時間料金: {fee:,}円", f"Time fee: {fee:,} yen"),
        ]
    if n.kind == "reservation_changed" and change is not None:
        return [
            ("ご予約の時間を変更しました。", "Your reservation's times were changed."),
            *head,
            (f"変更前: {when(change.old_start)} 〜 {when(change.old_end)}",
             f"Before: {when(change.old_start)} to {when(change.old_end)}"),
            (f"変更後: {when(change.new_start)} 〜 {when(change.new_end)}",
             f"Now: {when(change.new_start)} to {when(change.new_end)}"),
        ]  # fmt: skip
    if n.kind == "reservation_cancelled":
        fee = r.cancellation_fee or 0
        return [
            ("ご予約を取り消しました。", "Your reservation was cancelled."),
            *head,
            (
                f"予約時間: {when(r.start)} 〜 {when(r.end)}",
                f"Was: {when(r.start)} to {when(r.end)}",
            ),
            (f"キャンセル料: {fee:,}円", f"Cancellation fee: {fee:,} yen"),
        ]
    if n.kind == "reservation_extended" and change is not None:
        return [
            ("延長を承りました。", "Your extension is confirmed."),
            *head,
            (f"利用終了: {when(change.old_end)} → {when(change.new_end)}",
             f"End: {when(change.old_end)} → {when(change.new_end)}"),
        ]  # fmt: skip
    if n.kind == "trip_ended":
        trip = store.get_trip(r.reservation_id)
        total = sum(
            i.total
            for i in store.list_invoices(r.member_id)
            if i.reservation_id == r.reservation_id
        )
        used = (trip.ended_at or trip.started_at) - trip.started_at
        km = "-" if trip.distance_km is None else f"{trip.distance_km:,.1f} km"
        return [
            ("ご利用の終了を受け付けました。ご利用ありがとうございました。",
             "Your trip has ended. Thank you."),
            *head,
            (f"利用開始: {when(trip.started_at)}", f"Started: {when(trip.started_at)}"),
            (f"返却: {when(trip.ended_at)}", f"Returned: {when(trip.ended_at)}"),
            (f"利用時間: {duration_ja(used)}", f"Duration: {duration_en(used)}"),
            (f"走行距離: {km}", f"Distance: {km}"),
            (f"ご請求額: {total:,}円", f"Amount: {total:,} yen"),
            ("お忘れ物は、忘れ物の受付時間内に一度だけ再開錠できます。",
             "Forgot something? The car opens once more in its forgotten-item window."),
        ]  # fmt: skip
    raise KeyError(f"notification {n.notification_id}: no text for {n.kind!r}")


def _domain(sender: str) -> str:
    address = sender.rsplit("<", 1)[-1].rstrip(">")
    return address.rsplit("@", 1)[-1] or "localhost"


# ---- delivery ----------------------------------------------------------------------------------


class Mailer:
    """Sends what is due in the outbox, in order; retries what failed later."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        smtp: SmtpConfig,
        *,
        clock: Clock = system_clock,
        interval: float = 1.0,
        retry_first: dt.timedelta = dt.timedelta(seconds=30),
        retry_max: dt.timedelta = dt.timedelta(hours=1),
        lease: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self.store = store
        self.policy = policy
        self.smtp = smtp
        self.clock = clock
        self.interval = interval
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.lease = lease
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver_due(self, limit: int = 50) -> int:
        """Send every due notification (one SMTP connection for all); how many were sent. A
        failure puts the notification back for a later attempt; nothing is dropped."""
        now = self.clock()
        due = self.store.due_notifications(now, limit)
        if not due:
            return 0
        sent = 0
        server: smtplib.SMTP | None = None
        try:
            for item in due:
                n = self.store.claim_notification(item.notification_id, now, now + self.lease)
                if n is None:
                    continue  # another worker has it
                try:
                    message = render(self.store, self.policy, n, self.smtp.sender)
                except (NotFound, StoreError, KeyError) as exc:
                    self._failed(n, now, f"cannot render: {exc}")
                    continue
                try:
                    if server is None:
                        server = self._connect()
                    server.send_message(message)
                except (smtplib.SMTPException, OSError) as exc:
                    self._failed(n, now, f"{type(exc).__name__}: {exc}")
                    if server is None:
                        break  # the server cannot be reached: the rest waits for the next round
                    _quietly_close(server)
                    server = None
                    continue
                self.store.notification_sent(n.notification_id, self.clock())
                sent += 1
        finally:
            if server is not None:
                _quietly_close(server)
        return sent

    def _connect(self) -> smtplib.SMTP:
        return self.smtp.connect()

    def _failed(self, n: Notification, now: dt.datetime, error: str) -> None:
        delay = min(self.retry_first * 2 ** max(0, n.attempts - 1), self.retry_max)
        log.warning(
            "notification %d (%s to %s), attempt %d: %s; next attempt in %s",
            n.notification_id, n.kind, n.driver_id, n.attempts, error, delay,
        )  # fmt: skip
        self.store.notification_failed(n.notification_id, now + delay, error)

    # ---- the background thread --------------------------------------------------------------

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="kagi-mailer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.smtp.timeout + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except StoreError as exc:
                log.error("mailer: the store failed (%s); trying again", exc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _quietly_close(server: smtplib.SMTP) -> None:
    try:
        server.quit()
    except (smtplib.SMTPException, OSError):
        server.close()

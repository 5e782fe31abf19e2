"""Mails to drivers (SPEC N-MAIL-1) through a real SMTP server (aiosmtpd on a thread of the test,
on a free loopback port), on SQLite and PostgreSQL: each notification arrives once with its
text; the trip-end mail exists only once the car's trip_ended is applied; a mail server that is
down or refuses is tried again later and nothing is lost.
"""

# ruff: noqa: F811 (the fixtures imported from test_sync_support are parameters here)
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.notify import Mailer, SmtpConfig
from cloud.store import Store
from cloud.sync.events import EventApplier
from cloud.tests.test_sync_events import ended, ev, started
from cloud.tests.test_sync_support import (  # noqa: F401 (fixtures)
    ALICE,
    ALICE_CARD,
    BOB,
    NEW_CARD,
    POLICY,
    Workers,
    at,
    broker,
    fleet,
    start_sync,
    wait_until,
)
from tools.rig.mailbox import Mailbox


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture
def mailer(fleet: Store, mailbox: Mailbox, clock: Any) -> Mailer:
    smtp = SmtpConfig.from_url(f"smtp://127.0.0.1:{mailbox.port}?from=kagi%20<cars@kagi.example>")
    return Mailer(fleet, POLICY, smtp, clock=clock)


def test_each_notification_arrives_once_with_its_text(
    fleet: Store, mailer: Mailer, mailbox: Mailbox
) -> None:
    # SPEC N-MAIL-1 (new reservation, change, cancellation, extension, 利用終了受付,
    # 認証カードIDのご案内), F-TIME-1, F-CAN-1
    r = fleet.create_reservation(
        car_id="car-1", driver_id=ALICE, start=at(24, 10), end=at(24, 12), buffer_minutes=30
    )
    fleet.change_reservation(r.reservation_id, start=at(24, 10), end=at(24, 11),
                             buffer_minutes=30)  # fmt: skip
    bob = fleet.create_reservation(
        car_id="car-2", driver_id=BOB, start=at(25, 10), end=at(25, 12), buffer_minutes=30
    )
    fleet.cancel_reservation(bob.reservation_id, fee=600)
    fleet.set_car_state("car-1", 1.0, {"odometer_km": 12300.0})
    applier = EventApplier(fleet, POLICY)
    fleet.ingest_events("car-1", [started(1, r.reservation_id)], applier)
    fleet.extend_reservation(r.reservation_id, end=at(24, 12), buffer_minutes=30)
    fleet.ingest_events("car-1", [ended(2, r.reservation_id)], applier)
    card = {"driver_id": ALICE, "reservation_id": r.reservation_id, "card": NEW_CARD}
    fleet.ingest_events("car-1", [ev(3, "card_registered", card, at(24, 12, 45))], applier)

    sent = mailer.deliver_due()
    assert sent == len(mailbox.messages) == 10  # 7 above and the fleet's own 3 cards
    assert mailer.deliver_due() == 0  # once
    alice = mailbox.one("予約受付のお知らせ", "aki@example.jp")
    assert "Aki 様" in alice and "利用開始: 2026-11-24 10:00 JST" in alice
    assert "時間料金: 1,200円" in alice and "Time fee: 1,200 yen" in alice
    changed = mailbox.one("予約変更のお知らせ", "aki@example.jp")
    assert "変更前: 2026-11-24 10:00 JST 〜 2026-11-24 12:00 JST" in changed
    assert "変更後: 2026-11-24 10:00 JST 〜 2026-11-24 11:00 JST" in changed
    cancelled = mailbox.one("予約取消のお知らせ", "bob@example.jp")
    assert "キャンセル料: 600円" in cancelled
    extended = mailbox.one("延長受付のお知らせ", "aki@example.jp")
    assert "利用終了: 2026-11-24 11:00 JST → 2026-11-24 12:00 JST" in extended
    trip_end = mailbox.one("利用終了受付", "aki@example.jp")
    assert "返却: 2026-11-24 12:40 JST" in trip_end
    assert "走行距離: 45.6 km" in trip_end
    assert "ご請求額: 6,000円" in trip_end  # time 1,200 + distance 900 + overtime 900 + 3,000
    cards = [m for m in mailbox.messages if "認証カードIDのご案内" in str(m["Subject"])]
    assert len(cards) == 4  # the fleet's three and the one registered in the car
    body = [str(m.get_body().get_content()) for m in cards if "aki" in m["To"]]  # type: ignore[union-attr]
    assert any(f"認証カードID: {NEW_CARD[:16]}" in b for b in body)
    assert any(f"認証カードID: {ALICE_CARD[:16]}" in b for b in body)
    first = mailbox.messages[0]
    assert first["From"] == "kagi <cars@kagi.example>"
    assert str(first["Message-ID"]).endswith("@kagi.example>")


def test_the_trip_end_mail_exists_only_once_the_cars_trip_ended_is_applied(
    fleet: Store, mailer: Mailer, mailbox: Mailbox
) -> None:
    # SPEC N-MAIL-1: "if a trip-end notification is not sent, the trip did not end"
    r = fleet.create_reservation(
        car_id="car-1", driver_id=ALICE, start=at(24, 10), end=at(24, 12), buffer_minutes=30
    )
    applier = EventApplier(fleet, POLICY)
    fleet.ingest_events("car-1", [started(1, r.reservation_id)], applier)
    # the same end reported by another car: refused, no mail
    fleet.ingest_events("car-2", [ended(1, r.reservation_id)], applier)
    # the car's end arrives before an event it follows: held back, no mail
    fleet.ingest_events("car-1", [ended(3, r.reservation_id)], applier)
    mailer.deliver_due()
    assert not any("利用終了受付" in s for s in mailbox.subjects())
    assert fleet.get_reservation(r.reservation_id).status == "in_use"
    key = ev(2, "key_returned", {}, at(24, 12, 35))
    fleet.ingest_events("car-1", [key], applier)  # the gap fills: the end is applied
    mailer.deliver_due()
    assert fleet.get_reservation(r.reservation_id).status == "completed"
    assert "返却: 2026-11-24 12:40 JST" in mailbox.one("利用終了受付", "aki@example.jp")


def test_a_mail_server_down_or_refusing_is_tried_again_later_and_nothing_is_lost(
    fleet: Store, mailer: Mailer, mailbox: Mailbox, clock: Any
) -> None:
    # SPEC N-MAIL-1: retried with backoff, never dropped
    fleet.create_reservation(
        car_id="car-1", driver_id=ALICE, start=at(24, 10), end=at(24, 12), buffer_minutes=30
    )
    queued = len(fleet.list_notifications(unsent=True))
    assert queued == 4  # the reservation and the fleet's three cards
    mailbox.stop()
    assert mailer.deliver_due() == 0
    waiting = fleet.list_notifications(unsent=True)
    assert len(waiting) == queued
    failed = [n for n in waiting if n.attempts]
    assert failed and all("ConnectionRefusedError" in (n.last_error or "") for n in failed)
    assert all(n.next_attempt_at == clock.now + dt.timedelta(seconds=30) for n in failed)

    mailbox.start()
    mailbox.refuse = True  # up, but "try again later"
    clock.advance(seconds=30)
    assert mailer.deliver_due() == 0
    refused = [n for n in fleet.list_notifications(unsent=True) if n.attempts == 2]
    assert refused and "451" in (refused[0].last_error or "")
    assert refused[0].next_attempt_at == clock.now + dt.timedelta(seconds=60)  # backing off

    mailbox.refuse = False
    clock.advance(seconds=59)
    mailer.deliver_due()
    assert fleet.list_notifications(unsent=True) != []  # not yet due: nothing early
    clock.advance(seconds=1)
    while mailer.deliver_due():
        pass
    assert fleet.list_notifications(unsent=True) == []
    assert len(mailbox.messages) == queued
    assert len(set(mailbox.subjects())) == 2  # a reservation mail and the card mails, once each


def test_two_mailers_at_once_send_each_mail_once(
    fleet: Store, mailbox: Mailbox, start_sync: Workers, clock: Any
) -> None:
    # SPEC N-MAIL-1: several cloud workers share the outbox
    for day in range(24, 30):
        fleet.create_reservation(
            car_id="car-1", driver_id=ALICE, start=at(day, 10), end=at(day, 12), buffer_minutes=30
        )
    smtp = SmtpConfig(host="127.0.0.1", port=mailbox.port)
    mailers = [Mailer(start_sync.store(), POLICY, smtp, clock=clock) for _ in range(2)]
    threads = [threading.Thread(target=m.deliver_due) for m in mailers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(mailbox.messages) == 9
    assert len({str(m["Message-ID"]) for m in mailbox.messages}) == 9


def test_the_mailer_thread_delivers_as_mails_are_queued(
    fleet: Store, mailbox: Mailbox, clock: Any
) -> None:
    # SPEC N-MAIL-1
    smtp = SmtpConfig(host="127.0.0.1", port=mailbox.port)
    with Mailer(fleet, POLICY, smtp, clock=clock, interval=0.05):
        fleet.create_reservation(
            car_id="car-2", driver_id=BOB, start=at(24, 10), end=at(24, 12), buffer_minutes=30
        )
        wait_until(lambda: any("予約受付" in str(m["Subject"]) for m in mailbox.messages))
    [mail] = [m for m in mailbox.messages if "予約受付" in str(m["Subject"])]
    assert "bob@example.jp" in str(mail["To"])


def test_the_mail_server_is_named_by_a_url_and_a_bad_one_is_refused() -> None:
    cfg = SmtpConfig.from_url("smtp://kagi:s%40cret@mail.example.jp:587?starttls=1&from=a@b.jp")
    assert (cfg.host, cfg.port, cfg.username, cfg.password) == (
        "mail.example.jp", 587, "kagi", "s@cret",
    )  # fmt: skip
    assert (cfg.starttls, cfg.ssl, cfg.sender) == (True, False, "a@b.jp")
    assert SmtpConfig.from_url("smtps://mail.example.jp").port == 465
    for bad in ("mail.example.jp", "http://mail.example.jp", "smtp://host:99999"):
        with pytest.raises(ValueError, match="smtp"):
            SmtpConfig.from_url(bad)

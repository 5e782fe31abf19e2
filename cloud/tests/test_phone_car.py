"""The car controls on a reservation's page (SPEC P-WEB-4, S-SYNC-3), in headless Chromium at
360 px against a real `kagi cloud serve` with a short command timeout and no car on the broker:
the command times out and the page says so; a double tap sends one command (the buttons are
disabled on submit, and the server runs each form's one-time nonce once); where the test
answers in the car's place (the car's result recorded as the sync records it), a refused end
lists each failed check, and a card registration shows the car waiting for the tap, then the
card it registered. (A real simulated car is driven through the HIL rig.)"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import threading
import time
from typing import Any

import pytest

from cloud.tests.phone_help import DOCS, JST, Client, database, log_in, reserve
from cloud.tests.sites import START, Site

TIMEOUT = 3.0  # seconds the cloud waits for the car's result


@pytest.fixture(scope="module")
def site_args() -> tuple[str, ...]:
    return ("--command-timeout", str(TIMEOUT))


def commands(site: Site, name: str | None = None) -> list[tuple[str, str, str]]:
    """(command_id, name, status) of every command the cloud sent, oldest first."""
    with sqlite3.connect(site.db) as db:
        rows = db.execute(
            "SELECT command_id, name, status FROM car_commands ORDER BY issued_at, rowid"
        ).fetchall()
    return [tuple(r) for r in rows if name is None or r[1] == name]


class CarStandIn:
    """Answers the next command of `name` as the car would, through the sync's own record."""

    def __init__(self, site: Site, name: str, result: dict[str, Any]) -> None:
        self.site, self.name, self.result = site, name, result
        self.seen = {c[0] for c in commands(site)}
        self.answered: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.answered is None:
            for command_id, _name, status in commands(self.site, self.name):
                if command_id not in self.seen and status == "pending":
                    with database(self.site) as db:
                        body = {"command_id": command_id, **self.result}
                        db.answer_command(command_id, "car-001", body)
                    self.answered = command_id
            time.sleep(0.05)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), JST)


def test_a_car_that_does_not_answer_in_time_is_shown_and_a_double_tap_sends_once(
    site: Site, phone: Any
) -> None:
    """P-WEB-4, S-SYNC-3: the start is sent, the car does not answer, the page says the car did
    not answer in time; two taps in a row send one command (the button is disabled at once)."""
    site.set_time(START)
    page = log_in(site, phone, "XXY00001002")
    rid = reserve(page, "car-001", at(START.date(), 10), at(START.date(), 11))
    assert page.has("op-start") and page.has("op-register_card")
    assert not page.has("op-end"), "no end before the trip"
    before = len(commands(site))
    disabled = phone.execute_script(
        "const b = document.getElementById('op-start'); b.click(); b.click();"
        "return [b.disabled, document.getElementById('op-register_card').disabled,"
        " !document.getElementById('op-sending').hidden];"
    )
    assert disabled == [True, True, True]
    page.until(lambda: page.has("op-timeout"), "that the car did not answer", timeout=30)
    assert "時間内に応答がありませんでした" in page.text("op-timeout")
    assert page.data("op-result", "code") == "car_timeout"
    assert page.data("op-result", "name") == "start"
    sent = commands(site)[before:]
    assert [(name, status) for _, name, status in sent] == [("start", "timed_out")]
    assert page.path == f"/reservations/{rid}"
    assert page.fits_width()
    page.screenshot(DOCS / "phone-reservation.png")


def test_a_repeated_post_with_the_same_nonce_gets_the_first_result_without_sending_again(
    site: Site,
) -> None:
    """P-WEB-4: the server runs each control's one-time nonce once: two POSTs at the same time
    with it (a double tap past the script) and one after send one command; a new page's
    nonce sends again; a form without a nonce sends nothing."""
    site.set_time(START)
    day = dt.date(2027, 4, 6)
    with database(site) as db:
        rid = db.create_reservation(
            car_id="car-002", driver_id="XXY00001001", start=at(day, 10), end=at(day, 11),
            buffer_minutes=30,
        ).reservation_id  # fmt: skip
    alice = Client(site, "XXY00001001")
    try:
        form = alice.http.get(f"/reservations/{rid}").text
        nonce = re.search(
            r'operations/register_card"[^>]*>\s*<input[^>]*>\s*<input type="hidden" '
            r'name="nonce" value="([0-9a-f]{32})"',
            form,
        )
        assert nonce is not None
        before = len(commands(site))
        path = f"/reservations/{rid}/operations/register_card"
        answers: list[Any] = []

        def tap() -> None:
            answers.append(alice.post(path, {"nonce": nonce[1]}))

        taps = [threading.Thread(target=tap) for _ in range(2)]
        for t in taps:
            t.start()
        for t in taps:
            t.join(30)
        assert [a.status_code for a in answers] == [303, 303]
        assert answers[0].headers["location"] == answers[1].headers["location"]
        again = time.monotonic()
        third = alice.post(path, {"nonce": nonce[1]})
        assert third.status_code == 303 and time.monotonic() - again < TIMEOUT
        assert [name for _, name, _ in commands(site)[before:]] == ["register_card"]
        shown = alice.http.get(third.headers["location"]).text
        assert 'id="op-timeout"' in shown

        fresh = re.findall(r'name="nonce" value="([0-9a-f]{32})"', shown)
        assert fresh and nonce[1] not in fresh
        alice.post(path, {"nonce": fresh[-1]})
        assert len(commands(site)[before:]) == 2

        missing = alice.post(path, {})
        assert missing.status_code == 422
        assert len(commands(site)[before:]) == 2
    finally:
        alice.close()


def test_a_refused_end_lists_each_failed_check(site: Site, phone: Any) -> None:
    """P-WEB-4, U-END-1: during the trip the end is offered; the car refuses it naming the
    checks that failed, and the page lists each in the driver's words."""
    day = dt.date(2027, 4, 13)
    site.set_time(START)
    with database(site) as db:
        rid = db.create_reservation(
            car_id="car-001", driver_id="XXY00001002", start=at(day, 10), end=at(day, 12),
            buffer_minutes=30,
        ).reservation_id  # fmt: skip
        db.start_trip(rid, started_at=at(day, 10), started_by="card")
    site.set_time(at(day, 11))
    page = log_in(site, phone, "XXY00001002")
    page.open(f"/reservations/{rid}")
    for control in ("op-end", "op-reunlock", "op-forgotten_unlock", "op-forgotten_lock"):
        assert page.has(control), control
    car = CarStandIn(
        site, "end", {"ok": False, "code": "end_checks_failed", "failed": ["doors", "lights"]}
    )
    page.click("op-end")
    page.until(lambda: page.has("op-failed"), "the failed checks", timeout=30)
    assert car.answered is not None
    assert page.data("op-result", "ok") == "false"
    assert "ドアが開いています" in page.text("op-failed-doors")
    assert "ライトが点いています" in page.text("op-failed-lights")
    assert not page.has("op-timeout")


def test_registering_a_card_shows_the_car_waiting_and_then_the_card(site: Site, phone: Any) -> None:
    """P-WEB-4, U-CARD-1: the car accepts the registration and waits for the tap (the page
    says so); once the car registered the card, the page shows which card."""
    day = dt.date(2027, 4, 14)
    site.set_time(at(day, 9, 50))
    with database(site) as db:
        rid = db.create_reservation(
            car_id="car-001", driver_id="XXY00002001", start=at(day, 10), end=at(day, 12),
            buffer_minutes=30,
        ).reservation_id  # fmt: skip
    page = log_in(site, phone, "XXY00002001", lang="en")
    page.open(f"/reservations/{rid}")
    CarStandIn(site, "register_card", {"ok": True, "code": "registration_started"})
    page.click("op-register_card")
    page.until(lambda: page.has("card-waiting"), "the car waiting for the tap", timeout=30)
    assert "waiting for your card" in page.text("card-waiting")
    assert not page.el("card-registered").is_displayed()
    site.set_time(at(day, 9, 51))
    with database(site) as db:
        db.add_card("XXY00002001", "ab" * 32)
    page.until(lambda: page.el("card-registered").is_displayed(), "the registered card")
    assert "abababababababab" in page.text("card-registered")
    assert not page.el("card-waiting").is_displayed()

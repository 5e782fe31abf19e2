"""The console's store and alerts on SQLite and PostgreSQL (SPEC O-ROLE-1, O-ALERT-1,
O-FLEET-1): staff accounts and their checks; the audit log nobody can edit; alerts raised once
per cause by the cars' events and by a car offline too long, acknowledged, and mailed once to
the operator through a real SMTP server, a failed send tried again; the fleet's change order."""

# ruff: noqa: F811 (the fixtures imported from test_sync_support are parameters here)
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.alerts import END_FAILURES, AlertWatch
from cloud.notify import SmtpConfig
from cloud.store import Conflict, InvalidValue, Store
from cloud.tests.test_sync_events import ev, ingest
from cloud.tests.test_sync_support import ALICE, fleet  # noqa: F401 (fixtures)
from tools.rig.mailbox import Mailbox

CAR = "car-1"
OPERATOR = "ops@operator.example"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


def kinds(store: Store) -> list[tuple[str, str | None]]:
    return sorted((a.kind, a.car_id) for a in store.list_alerts())


def test_staff_accounts_are_checked_and_the_audit_log_cannot_be_edited(
    fleet: Store, clock: Any
) -> None:
    """O-ROLE-1: a technician needs one car and a window that ends after it starts; the other
    roles have neither; a disabled account has no password to log in with; the audit log
    refuses any change, even in SQL."""
    now = clock()
    fleet.add_staff("ops", name="Ops", role="operator")
    fleet.set_staff_password_hash("ops", "hash")
    tech = fleet.add_staff("tech", name="T", role="technician", car_id=CAR, window_start=now,
                           window_end=now + dt.timedelta(hours=2))  # fmt: skip
    assert (tech.car_id, tech.window_end) == (CAR, now + dt.timedelta(hours=2))
    with pytest.raises(InvalidValue, match="one car and a time window"):
        fleet.add_staff("t2", name="T", role="technician", car_id=CAR)
    with pytest.raises(InvalidValue, match="end after"):
        fleet.add_staff("t3", name="T", role="technician", car_id=CAR, window_start=now,
                        window_end=now)  # fmt: skip
    with pytest.raises(InvalidValue, match="only a technician"):
        fleet.add_staff("v", name="V", role="viewer", car_id=CAR)
    with pytest.raises(InvalidValue, match="role"):
        fleet.add_staff("x", name="X", role="admin")
    with pytest.raises(Conflict):
        fleet.add_staff("ops", name="Again", role="viewer")
    assert fleet.staff_password_hash("ops") == "hash"
    fleet.set_staff_disabled("ops", True)
    assert fleet.staff_password_hash("ops") is None

    entry = fleet.audit("ops", "command:lock", CAR, "ok:locked", {"args": {}})
    assert fleet.list_audit()[0] == entry
    for sql in ("UPDATE audit_log SET result = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="cannot be edited"), fleet.batch():
            fleet._execute(sql)
    assert fleet.list_audit() == [entry]


def test_the_cars_events_raise_each_alert_once(fleet: Store, clock: Any) -> None:
    """O-ALERT-1: a security lock, a suspected clone, overtime, a board link lost, and the
    third refused end of one reservation; the same cause repeated raises nothing more."""
    now = clock()
    ingest(
        fleet, CAR,
        ev(1, "security_locked", {"reason": "door_timer", "reservation_id": "r1"}, now),
        ev(2, "card_clone_suspected", {"card": "ab" * 32, "driver_id": ALICE}, now),
        ev(3, "board_link", {"up": True, "reason": "boot"}, now),
        ev(4, "board_link", {"up": False, "reason": "no heartbeat"}, now),
        *(ev(5 + i, "end_refused", {"reservation_id": "r1", "failed": ["brake"]}, now)
          for i in range(END_FAILURES + 1)),
    )  # fmt: skip
    assert kinds(fleet) == [
        ("board_link_lost", CAR),
        ("card_clone_suspected", CAR),
        ("end_failing", CAR),
        ("security_locked", CAR),
    ]
    assert (
        "no heartbeat"
        in next(a for a in fleet.list_alerts() if a.kind == "board_link_lost").message
    )


def test_a_car_offline_too_long_is_an_alert_once_per_outage(fleet: Store, clock: Any) -> None:
    watch = AlertWatch(fleet, offline_after=dt.timedelta(minutes=10), clock=clock)
    fleet.set_car_online(CAR, True, clock().timestamp())
    fleet.set_car_online(CAR, False, None)  # its last will: gone
    clock.advance(minutes=9)
    assert watch.check_offline() == 0
    clock.advance(minutes=2)
    assert watch.check_offline() == 1
    assert watch.check_offline() == 0
    (alert,) = fleet.list_alerts()
    assert (alert.kind, alert.car_id) == ("car_offline", CAR)
    assert "11 min" in alert.message
    acknowledged = fleet.acknowledge_alert(alert.alert_id, "ops")
    assert acknowledged.acknowledged_by == "ops"
    assert fleet.list_alerts() == []
    assert len(fleet.list_alerts(open_only=False)) == 1


def test_each_alert_is_mailed_to_the_operator_once_and_a_failed_send_again(
    fleet: Store, clock: Any, mailbox: Mailbox
) -> None:
    smtp = SmtpConfig.from_url(f"smtp://127.0.0.1:{mailbox.port}?from=kagi%20<alerts@kagi.jp>")
    watches = [AlertWatch(fleet, send=smtp.send, to=OPERATOR, clock=clock) for _ in range(2)]
    fleet.raise_alert("security_locked:e1", "security_locked", CAR, f"{CAR} locked itself")
    mailbox.refuse = True
    assert watches[0].mail_new() == 0
    mailbox.refuse = False
    assert [w.mail_new() for w in watches] == [1, 0]  # the second node finds it mailed
    assert mailbox.subjects(OPERATOR) == [f"[kagi] security_locked {CAR}"]
    assert f"{CAR} locked itself" in mailbox.one("security_locked", OPERATOR)


def test_the_fleet_order_names_what_changed_since(fleet: Store, clock: Any) -> None:
    """O-FLEET-1: each kept report takes the next number; a stale one changes nothing."""
    assert fleet.status_changes(0) == []
    fleet.set_car_state(CAR, 100.0, {"trip_state": "idle"})
    fleet.set_car_state("car-2", 100.0, {"trip_state": "in_use"})
    fleet.set_car_online(CAR, True, 101.0)
    changed = fleet.status_changes(0)
    assert [(r.car_id, r.status_seq) for r in changed] == [("car-2", 2), (CAR, 3)]
    assert fleet.set_car_state(CAR, 50.0, {"trip_state": "unlocked"}) is False
    assert fleet.status_changes(3) == []
    (row,) = fleet.fleet(car_id=CAR)
    assert (row.state, row.online, row.station_id) == ({"trip_state": "idle"}, True, "st-1")

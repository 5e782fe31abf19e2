"""`Store`: the cloud's database, whichever backend. Open one with `cloud.store.open_store`.

Its API, by topic: `cloud.store.fleet` (settings, members, drivers, password hashes, cards,
stations, cars) and `cloud.store.bookings` (reservations and their history, trips, refuels,
invoices), `cloud.store.driver_pages` (change applications, damage reports), `cloud.store.console`
(staff, the audit log, alerts, the fleet rows), `cloud.store.rollouts` (fleet updates);
`cloud.store.core` holds the backend interface that `sqlite` and `postgres` implement.
"""

from __future__ import annotations

from cloud.store.bookings import BookingStore
from cloud.store.console import ConsoleStore
from cloud.store.core import Clock, StoreCore, check_not_newer, slot, system_clock
from cloud.store.driver_pages import DriverPagesStore
from cloud.store.fleet import FleetStore
from cloud.store.rollouts import RolloutStore
from cloud.store.sync import SyncStore

__all__ = ["Clock", "Store", "StoreCore", "check_not_newer", "slot", "system_clock"]


class Store(FleetStore, BookingStore, SyncStore, DriverPagesStore, ConsoleStore, RolloutStore):
    """The cloud's database: every public method is one transaction (see the modules above)."""

"""A trip's bill from the store (SPEC F-*), and refuels entered after it (O-ADM-1, guide §3-5).

`trip_bill` is what the car's trip end invoices (`cloud.sync.events`). A refuel receipt is often
found in the glovebox after the trip was invoiced: `record_refuel` keeps it and, when the trip
was invoiced already, issues what the receipt changes as an adjustment invoice of the same
trip — the F-FUEL-1 discount it earns (`refuel_receipt`), or, for an emergency refuel the
driver paid, the amount to reimburse (`refuel_reimbursement`), never discounted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cloud import model
from cloud.fees import Invoice as Bill
from cloud.fees import invoice
from cloud.policy import Policy
from cloud.store import Store
from cloud.store import records as rec


def trip_bill(store: Store, policy: Policy, reservation_id: str) -> Bill:
    """The invoice of a returned (or never started) reservation, with its refuels."""
    row = store.get_reservation(reservation_id)
    trip = store.get_trip(reservation_id) if row.status in ("in_use", "completed") else None
    distance = 0.0 if trip is None else max(0.0, trip.distance_km or 0.0)
    refuels = [model.refuel_from(r) for r in store.list_refuels(reservation_id)]
    car = model.car_from(store.get_car(row.car_id))
    return invoice(policy, car, model.reservation_from(row), distance_km=distance, refuels=refuels)


def record_refuel(
    store: Store,
    policy: Policy,
    reservation_id: str,
    *,
    at: dt.datetime,
    litres: float,
    amount_yen: int,
    kind: str,
    by: str,
) -> tuple[rec.Refuel, rec.Invoice | None]:
    """Keep a refuel from its receipt; the adjustment invoice it makes, if any (one
    transaction: the refuel and its adjustment, or neither)."""
    with store.batch():
        refuel = store.add_refuel(
            reservation_id, at=at, litres=litres, amount_yen=amount_yen, kind=kind,
            recorded_by=by,
        )  # fmt: skip
        row = store.get_reservation(reservation_id)
        lines: list[dict[str, object]] = []
        if kind == "emergency":
            lines.append({
                "code": "refuel_reimbursement",
                "label_ja": f"立替給油の精算（{litres:g} L）",
                "label_en": f"Emergency refuel reimbursed ({litres:g} L)",
                "yen": -amount_yen,
            })  # fmt: skip
        invoiced = [i for i in store.list_invoices(row.member_id)
                    if i.reservation_id == reservation_id]  # fmt: skip
        if kind == "receipt" and invoiced:
            trip_lines = [ln for i in invoiced for ln in i.lines
                          if ln["code"] != "refuel_reimbursement"]  # fmt: skip
            owed = trip_bill(store, policy, reservation_id).total
            change = owed - sum(int(ln["yen"]) for ln in trip_lines)
            if change:
                lines.append({
                    "code": "refuel_receipt",
                    "label_ja": f"給油割引（領収書、{litres:g} L）",
                    "label_en": f"Refuel discount (receipt, {litres:g} L)",
                    "yen": change,
                })  # fmt: skip
        adjustment = (
            store.add_invoice(row.member_id, lines, reservation_id=reservation_id)
            if lines
            else None
        )
    return refuel, adjustment


def bill_lines(bill: Bill) -> list[dict[str, object]]:
    return [dataclasses.asdict(line) for line in bill.lines]

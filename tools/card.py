"""`kagi card …`: read a card at the counter, emulate one for tests, provision a strong card."""

from __future__ import annotations

from typing import Any


def add_parser(rooms: Any) -> None:
    card = rooms.add_parser("card", help="FeliCa cards: read, emulate, provision")
    card.add_subparsers(dest="command", required=True, metavar="COMMAND")

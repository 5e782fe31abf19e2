"""`kagi cloud …`: serve the API, administer members, drivers, cards, cars and stations."""

from __future__ import annotations

from typing import Any


def add_parser(rooms: Any) -> None:
    cloud = rooms.add_parser("cloud", help="the operator's cloud")
    cloud.add_subparsers(dest="command", required=True, metavar="COMMAND")

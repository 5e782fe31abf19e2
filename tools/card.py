"""`kagi card …`: read a card at the counter, emulate one for tests, provision a strong card.

    kagi card read --device usb:054c:06c1 --config unit.toml
    kagi card provision --device usb:054c:06c1 --config unit.toml
    kagi card emulate --device udp:localhost:50000 --idm 0101010101010101 --seconds 5

`read` prints what a card says when polled (type, IDm, PMm) and its keyed hash, the name under
which it is registered; it reads no block of a plain card (SPEC U-CARD-2). With a card master key
it also checks a FeliCa Lite-S card's mutual authentication. `provision` writes a Lite-S card's own
key (derived from the master key and its IDm), locks the card's system blocks, checks the mutual
authentication and prints the hash to register as a strong card. Keys come from a unit
configuration (`--config`: `unit.card_key`, `unit.card_master_key`) or from the options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from protocol.cards import card_hash, lite_s_card_key

DEFAULT_WAIT = 30.0


def add_parser(rooms: Any) -> None:
    card = rooms.add_parser("card", help="FeliCa cards: read, emulate, provision")
    cmds = card.add_subparsers(dest="command", required=True, metavar="COMMAND")

    read = cmds.add_parser("read", help="print a card's type, IDm, PMm and keyed hash")
    _device_and_keys(read)
    read.set_defaults(func=_read)

    provision = cmds.add_parser(
        "provision", help="write a FeliCa Lite-S card's own key and lock it: a strong card"
    )
    _device_and_keys(provision)
    provision.set_defaults(func=_provision)

    emulate = cmds.add_parser("emulate", help="present an emulated card on a udp: device")
    add_emulate_arguments(emulate)
    emulate.set_defaults(func=_emulate)


def add_emulate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `kagi card emulate`."""
    parser.add_argument("--device", required=True, help="the card's end of the link: udp:HOST:PORT")
    parser.add_argument("--idm", required=True, help="the card's IDm, 16 hex digits")
    parser.add_argument("--pmm", help="the card's PMm, 16 hex digits (default: by card type)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--lite-s-key", help="a FeliCa Lite-S card holding this card key (hex)")
    kind.add_argument(
        "--master-key", help="a FeliCa Lite-S card provisioned from this card master key (hex)"
    )
    kind.add_argument("--blank-lite-s", action="store_true", help="a blank FeliCa Lite-S card")
    parser.add_argument("--bitrate", choices=("212", "424"), default="212", help="kbps")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="present the card this long (default: until stopped)",
    )
    parser.add_argument(
        "--record", help="write what the reader asked of the card to this file (JSON) on exit"
    )


def _emulate(args: argparse.Namespace) -> int:
    from tools import card_emulator  # nfcpy is imported only by the commands that use it

    return card_emulator.run(args)


def _device_and_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", required=True, help="nfcpy device: usb:054c:06c1, udp:HOST:PORT"
    )
    parser.add_argument("--config", help="a unit configuration to take the keys from")
    parser.add_argument("--fleet-key", help="the fleet key for card hashes (hex)")
    parser.add_argument("--master-key", help="the card master key for Lite-S cards (hex)")
    parser.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT, help="seconds to wait for a card (default 30)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


class CardCommandError(Exception):
    """What went wrong, in words for the technician; the command exits 2."""


@dataclass(frozen=True)
class Keys:
    fleet: bytes
    master: bytes | None


def _keys(args: argparse.Namespace, need_master: bool) -> Keys:
    fleet_hex, master_hex = args.fleet_key, args.master_key
    if args.config:
        from firmware.config import ConfigError, load_unit_config

        try:
            config = load_unit_config(args.config)
        except ConfigError as exc:
            raise CardCommandError(str(exc)) from None
        fleet_hex = fleet_hex or config.card_key
        master_hex = master_hex or config.card_master_key or None
    if not fleet_hex:
        raise CardCommandError("no fleet key: give --config UNIT.toml or --fleet-key HEX")
    fleet = _key(fleet_hex, "--fleet-key")
    master = _key(master_hex, "--master-key") if master_hex else None
    if need_master and master is None:
        raise CardCommandError(
            "no card master key: give --master-key HEX or a --config with unit.card_master_key"
        )
    return Keys(fleet, master)


def _key(text: str, option: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise CardCommandError(f"{option}: expected hex digits") from None
    if len(key) < 16:
        raise CardCommandError(f"{option}: must be at least 16 bytes (32 hex digits)")
    return key


def _wait_for_card(device: str, wait: float) -> tuple[Any, Any]:
    """Open the reader and poll until a card answers: (frontend, card)."""
    from firmware.reader_nfc import open_frontend, poll

    try:
        clf = open_frontend(device)
    except (OSError, ValueError) as exc:
        raise CardCommandError(
            f"reader {device}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    print(f"kagi card: hold a card on the reader ({device})…", file=sys.stderr, flush=True)
    deadline = time.monotonic() + wait
    try:
        while True:
            card = poll(clf)
            if card is not None:
                return clf, card
            if time.monotonic() > deadline:
                raise CardCommandError(f"no card within {wait:g} s")
            time.sleep(0.02)
    except OSError as exc:
        clf.close()
        raise CardCommandError(f"reader {device}: lost ({exc.strerror or exc})") from None
    except BaseException:
        clf.close()
        raise


def _describe(card: Any, keys: Keys) -> dict[str, Any]:
    return {
        "type": card.kind,
        "idm": card.idm.hex().upper(),
        "pmm": card.pmm.hex().upper(),
        "system_code": None if card.system_code is None else f"{card.system_code:04X}",
        "bitrate_kbps": int(card.bitrate[:3]),
        "card_hash": card_hash(keys.fleet, card.idm),
        "lite_s": card.lite_s,
    }


def _print(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info))
        return
    labels = {
        "type": "type",
        "idm": "IDm",
        "pmm": "PMm",
        "system_code": "system code",
        "bitrate_kbps": "bit rate (kbps)",
        "card_hash": "keyed hash",
        "strong": "strong",
    }
    for key, label in labels.items():
        if key in info:
            print(f"{label + ':':<17}{info[key]}")


def _run(args: argparse.Namespace, work: Any) -> int:
    try:
        return int(work(args))
    except CardCommandError as exc:
        if args.debug:
            raise
        print(f"kagi card {args.command}: {exc}", file=sys.stderr)
        return 2


def _read(args: argparse.Namespace) -> int:
    return _run(args, _read_card)


def _read_card(args: argparse.Namespace) -> int:
    """U-CARD-2: the poll answer only; a Lite-S card is authenticated when a master key is set."""
    from firmware.reader_nfc import CardGone, authenticate

    keys = _keys(args, need_master=False)
    clf, card = _wait_for_card(args.device, args.wait)
    try:
        info = _describe(card, keys)
        info["authenticated"] = None
        if not card.lite_s:
            info["strong"] = "no (not a FeliCa Lite-S card)"
        elif keys.master is None:
            info["strong"] = "not checked (no card master key)"
        else:
            try:
                ok = authenticate(clf, card, keys.master)
            except CardGone:
                raise CardCommandError(
                    "the card left the reader; hold it still and retry"
                ) from None
            info["strong"] = (
                "yes (mutual authentication ok)"
                if ok
                else "NO: mutual authentication failed (not provisioned, or a copy)"
            )
            info["authenticated"] = ok
    finally:
        clf.close()
    _print(info, args.json)
    return 0


def _provision(args: argparse.Namespace) -> int:
    return _run(args, _provision_card)


def _provision_card(args: argparse.Namespace) -> int:
    keys = _keys(args, need_master=True)
    assert keys.master is not None
    clf, card = _wait_for_card(args.device, args.wait)
    try:
        if not card.lite_s:
            raise CardCommandError(
                f"a {card.kind} cannot be made strong: only FeliCa Lite-S cards hold a card key"
            )
        outcome = provision_lite_s(clf, card, lite_s_card_key(keys.master, card.idm))
    finally:
        clf.close()
    info = _describe(card, keys)
    info["strong"] = "yes"
    info["provisioned"] = outcome
    if args.json:
        print(json.dumps(info))
    else:
        _print(info, False)
        print(
            f"kagi card provision: {outcome}; register the keyed hash as a strong card",
            file=sys.stderr,
        )
    return 0


MC, CKV, CK = 0x88, 0x86, 0x87


def provision_lite_s(clf: Any, card: Any, key: bytes) -> str:
    """Give a Lite-S card its own key and lock it, as nfcpy's `FelicaLiteS.protect` does (which
    takes the key as text): new key version, key, mutual authentication, system blocks read-only
    with key change by MAC only. A card already holding this key is left as it is."""
    import nfc.tag
    from nfc.tag import tt3_sony

    tag = tt3_sony.FelicaLiteS(clf, card.target)
    try:
        mc = bytearray(tag.read_without_mac(MC))
        if mc[2] != 0xFF:  # its system blocks are locked: provisioned before
            if tag.authenticate(key):
                return "already provisioned with this fleet's key"
            raise CardCommandError(
                "this card is locked with another key (another fleet's, or a different master "
                "key); it cannot be provisioned"
            )
        version = int.from_bytes(tag.read_without_mac(CKV)[0:2], "little")
        tag.write_without_mac(min(version + 1, 0xFFFF).to_bytes(2, "little") + bytes(14), CKV)
        tag.write_without_mac(key[7::-1] + key[15:7:-1], CK)
        if not tag.authenticate(key):
            raise CardCommandError("the card did not take its new key; it was not locked")
        mc[2] = 0x00  # system blocks read-only
        mc[5] = 0x01  # but the key may still be changed with a MAC (after authentication)
        tag.write_without_mac(bytes(mc), MC)
    except nfc.tag.TagCommandError as exc:
        raise CardCommandError(
            f"the card stopped answering ({exc}); hold it on the reader and run provision again"
        ) from None
    return "provisioned"

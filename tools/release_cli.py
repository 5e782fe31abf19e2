"""`kagi release`: the operator's offline release commands (SPEC O-OTA-1).

    kagi release keys KEYS                  # once: root, targets and the cloud's online key
    kagi release sign --keys KEYS --version 0.2.0 --wheel dist/kagi-0.2.0-py3-none-any.whl \\
        --board pico --current targets.json --out release-0.2.0
    kagi cloud publish-release --repo REPO release-0.2.0    # on the cloud

`--current` is the targets.json the cloud serves now (`/updates/metadata/targets.json`); the
new one follows it. Without `--wheel`, the wheel of this checkout is built (`pip wheel`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from cloud.cli_errors import refusing
from firmware.config import ConfigError, check_fleet_config
from protocol.release import ReleaseError, parse_version
from tools import flash, release

ROOT = Path(__file__).resolve().parent.parent


_refusing = refusing("release", ReleaseError, OSError, subprocess.CalledProcessError)


def add_parser(rooms: Any) -> None:
    p = rooms.add_parser("release", help="make and sign releases with the offline keys")
    cmds = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    text = "make the release keys (offline root and targets, the cloud's online key)"
    k = cmds.add_parser("keys", help=text, description=text)
    k.add_argument("folder", help="where the keys and root.json go (kept offline)")
    k.set_defaults(func=_refusing(_keys))

    text = "sign a release: the unit's wheel and the boards' files, with the targets key"
    s = cmds.add_parser("sign", help=text, description=text)
    s.add_argument("--keys", required=True, help="the folder `kagi release keys` made")
    s.add_argument("--version", required=True, help="the release's version, MAJOR.MINOR.PATCH")
    s.add_argument("--wheel", help="the unit's wheel (default: build this checkout's)")
    s.add_argument(
        "--board",
        action="append",
        default=[],
        help="a board whose firmware the release carries (repeat; default: every board "
        "kagi board flash knows)",
    )
    s.add_argument("--current", help="the targets.json the cloud serves now (none: the first)")
    s.add_argument("--out", required=True, help="the folder to write the signed release into")
    s.set_defaults(func=_refusing(_sign))

    text = "sign a fleet configuration (timings, end checks, feedback, cards) with the targets key"
    c = cmds.add_parser("sign-config", help=text, description=text)
    c.add_argument("--keys", required=True, help="the folder `kagi release keys` made")
    c.add_argument(
        "--version", required=True, type=int, help="the configuration's number (1, 2, …)"
    )
    c.add_argument("--file", required=True, help="a TOML file of the tables it sets")
    c.add_argument("--current", help="the targets.json the cloud serves now (none: the first)")
    c.add_argument("--out", required=True, help="the folder to write the signed configuration into")
    c.set_defaults(func=_refusing(_sign_config))


def _sign_config(args: argparse.Namespace) -> int:
    try:
        tables = tomllib.loads(Path(args.file).read_text(encoding="utf-8"))
        body = {"version": args.version, **tables}
        check_fleet_config(body)  # as the cars will: refused here, before it is signed
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise ReleaseError(f"{args.file}: {exc}") from None
    current = Path(args.current).read_bytes() if args.current else None
    data = json.dumps(body, indent=2, sort_keys=True).encode()
    targets, files = release.sign_config(Path(args.keys), args.version, data, current)
    _write_release(Path(args.out), targets, files)
    print(f"configuration {args.version} signed into {args.out}")
    return 0


def _write_release(out: Path, targets: bytes, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (out / "targets" / path).parent.mkdir(parents=True, exist_ok=True)
        (out / "targets" / path).write_bytes(data)
    (out / "targets.json").write_bytes(targets)


def _keys(args: argparse.Namespace) -> int:
    root = release.keys(Path(args.folder))
    print(f"keys and {root} made; keep root.key and targets.key offline; give the cloud "
          "online.key and root.json; provision every car with root.json")  # fmt: skip
    return 0


def _boards(names: list[str]) -> dict[str, dict[str, bytes]]:
    """Each board's files as `kagi board flash` writes them (its manifest included)."""
    try:
        return {name: flash.firmware(name).wanted() for name in names or sorted(flash.PLATFORMS)}
    except flash.FlashError as exc:
        raise ReleaseError(str(exc)) from exc


def _sign(args: argparse.Namespace) -> int:
    parse_version(args.version)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(args.wheel) if args.wheel else build_wheel(Path(tmp))
        check_wheel_version(wheel, args.version)
        current = Path(args.current).read_bytes() if args.current else None
        targets, files = release.sign(
            Path(args.keys), args.version, release.parts(wheel, _boards(args.board)), current
        )
    _write_release(Path(args.out), targets, files)
    print(f"release {args.version} signed into {args.out} ({len(files)} files)")
    return 0


def check_wheel_version(wheel: Path, version: str) -> None:
    """A kagi wheel must be the version the release says: the car reports what it runs."""
    name, _, rest = wheel.name.partition("-")
    built = rest.partition("-")[0]
    if name == "kagi" and built != version:
        raise ReleaseError(
            f"{wheel.name} is kagi {built}, not {version}: set the version in pyproject.toml "
            "and build again, or give --version " + built
        )


def build_wheel(into: Path) -> Path:
    """This checkout's wheel (no dependencies: the unit installs them pinned from its own)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(into), str(ROOT)],
        check=True,
    )  # fmt: skip
    return next(into.glob("kagi-*.whl"))

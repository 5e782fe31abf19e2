"""`kagi cloud` commands for the update repository (SPEC O-OTA-1): set it up from the operator's
root metadata and the cloud's online key, publish a release the offline keys signed, list what
it holds. `kagi cloud serve --updates REPO` serves it to the cars."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from cloud.cli_errors import refusing
from cloud.update_repo import ONLINE_KEY, UpdateRepo
from protocol.release import ReleaseError, load_signer

_refusing = refusing("cloud", ReleaseError, OSError, ValueError)


def add_commands(cmds: Any) -> None:
    repo = argparse.ArgumentParser(add_help=False)
    repo.add_argument("--repo", required=True, help="the update repository's folder")

    text = "set up the update repository from root.json and the cloud's online key"
    p = cmds.add_parser("updates-init", parents=[repo], help=text, description=text)
    p.add_argument("--root", required=True, help="the root.json `kagi release keys` made")
    p.add_argument("--online-key", required=True, help="the online.key `kagi release keys` made")
    p.set_defaults(func=_refusing(_init))

    text = "publish a release `kagi release sign` wrote (its targets.json and files)"
    p = cmds.add_parser("publish-release", parents=[repo], help=text, description=text)
    p.add_argument("release", help="the folder `kagi release sign --out` wrote")
    p.set_defaults(func=_refusing(_publish))

    text = "list the releases the update repository serves"
    p = cmds.add_parser("list-releases", parents=[repo], help=text, description=text)
    p.set_defaults(func=_refusing(_list))


def open_repo(folder: str) -> UpdateRepo:
    path = Path(folder)
    if not (path / ONLINE_KEY).exists():
        raise ReleaseError(f"{path} is not an update repository: run kagi cloud updates-init")
    return UpdateRepo(path, load_signer(path / ONLINE_KEY))


def _init(args: argparse.Namespace) -> int:
    folder = Path(args.repo)
    folder.mkdir(parents=True, exist_ok=True)
    repo = UpdateRepo(folder, load_signer(Path(args.online_key)))
    repo.init(Path(args.root).read_bytes())
    shutil.copyfile(args.online_key, folder / ONLINE_KEY)
    (folder / ONLINE_KEY).chmod(0o600)
    print(f"update repository ready in {folder}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    repo, source = open_repo(args.repo), Path(args.release)
    targets = (source / "targets.json").read_bytes()
    files = {
        str(p.relative_to(source / "targets")): p.read_bytes()
        for p in sorted((source / "targets").rglob("*"))
        if p.is_file()
    }
    versions = repo.publish(targets, files)
    configs = repo.config_versions()
    print(f"published; the repository serves {', '.join(versions) or 'no release'}"
          + (f" and configuration {configs[-1]}" if configs else ""))  # fmt: skip
    return 0


def _list(args: argparse.Namespace) -> int:
    for version in open_repo(args.repo).versions():
        print(version)
    return 0

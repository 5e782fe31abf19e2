"""Mosquitto for production and tests: its configuration (password file and ACL) for a fleet, and
a private broker process on loopback.

`kagi cloud mosquitto-config` writes the files for an operator's broker; `Mosquitto` starts one of
our own (tests, benchmarks, `make run`). Each car's account is named after its car ID and may
read and write only `kagi/v1/cars/{car_id}/#` (SPEC X-SEC-2); the cloud's account reads and
writes every car's topics.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from protocol import topics

CLOUD_USER = "kagi-cloud"


class MosquittoError(RuntimeError):
    """The broker could not be configured or started; the message says why."""


def acl_text(cloud_user: str = CLOUD_USER) -> str:
    """The ACL: the cloud reaches every car; a car only its own topics (`%u` = its user name)."""
    return (
        f"user {cloud_user}\n"
        f"topic readwrite {topics.ROOT}/#\n"
        "\n"
        f"pattern readwrite {topics.ROOT}/%u/#\n"
    )


def write_config(
    folder: Path,
    accounts: Mapping[str, str],
    *,
    port: int = 1883,
    host: str = "127.0.0.1",
    persistence: bool = True,
    cafile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    cloud_user: str = CLOUD_USER,
) -> Path:
    """Write `mosquitto.conf`, `passwords` (hashed by mosquitto_passwd) and `acl` into `folder`;
    return the config file. `accounts` maps user name (car IDs and the cloud's) to password.
    With `certfile` and `keyfile` the listener speaks TLS (the operator's CA in `cafile`)."""
    for user in accounts:
        if user != cloud_user:
            topics.check_car_id(user)
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise MosquittoError("mosquitto_passwd not found: install Debian's mosquitto package")
    folder.mkdir(parents=True, exist_ok=True)
    passwords = folder / "passwords"
    passwords.write_text("")
    for user, password in accounts.items():
        done = subprocess.run(
            [tool, "-b", str(passwords), user, password], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise MosquittoError(f"mosquitto_passwd {user}: {done.stderr.strip()}")
    acl = folder / "acl"
    acl.write_text(acl_text(cloud_user))
    lines = [
        f"listener {port} {host}",
        "allow_anonymous false",
        f"password_file {passwords}",
        f"acl_file {acl}",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {folder}/",
        "autosave_interval 1" if persistence else "",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "max_queued_messages 100000",
    ]
    if certfile and keyfile:
        lines += [f"certfile {certfile}", f"keyfile {keyfile}"]
        if cafile:
            lines.append(f"cafile {cafile}")
    config = folder / "mosquitto.conf"
    config.write_text("\n".join(line for line in lines if line) + "\n")
    return config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A private Mosquitto on a free loopback port: `with Mosquitto({"car-1": "pw"}) as broker:`.

    `stop()`/`start()` (or `kill()`) keep the folder, so a persistent broker restarts with its
    retained messages and queued sessions."""

    def __init__(self, accounts: Mapping[str, str], *, persistence: bool = False) -> None:
        self.accounts = dict(accounts)
        self.persistence = persistence
        self.folder = Path(tempfile.mkdtemp(prefix="kagi-mosquitto-"))
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = write_config(
            self.folder, self.accounts, port=self.port, persistence=persistence
        )
        if os.geteuid() == 0:  # run as root, mosquitto drops to its own user: let it read
            try:
                account = pwd.getpwnam("mosquitto")
            except KeyError:
                account = None
            if account is not None:
                for path in (self.folder, *self.folder.iterdir()):
                    os.chown(path, account.pw_uid, account.pw_gid)
        atexit.register(self.close)

    def start(self) -> Self:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise MosquittoError("mosquitto not found: install Debian's mosquitto package")
        log = open(self.folder / "broker.log", "ab")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen([binary, "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MosquittoError(f"mosquitto exited: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.01)
        self.kill()
        raise MosquittoError(f"mosquitto did not listen within 10 s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.folder / "broker.log"
        return path.read_text(errors="replace")[-800:] if path.exists() else ""

    def stop(self) -> None:
        """A clean stop (SIGTERM): a persistent broker saves its state."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """A crash (SIGKILL): whatever was not saved is lost, as on a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

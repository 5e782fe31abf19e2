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
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cloud.accounts import (
    CLOUD_USER,
    AccountsError,
    Tls,
    acl_text,
    hash_password,
    parse_password_file,
)
from cloud.pgserver import die_with_parent
from protocol import topics

__all__ = ["CLOUD_USER", "Mosquitto", "MosquittoError", "acl_text", "write_config"]


class MosquittoError(RuntimeError):
    """The broker could not be configured or started; the message says why."""


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
    password_file: Path | None = None,
) -> Path:
    """Write `mosquitto.conf`, `passwords` (Mosquitto's `$7$` hashes) and `acl` into `folder`;
    return the config file. `accounts` maps user name (car IDs and the cloud's) to password;
    `password_file` adds the hashed accounts of such a file (the fleet's, `cloud.accounts`).
    `host` "" listens on every interface. With `certfile` and `keyfile` the listener speaks TLS
    (the operator's CA in `cafile`)."""
    for user in accounts:
        if user != cloud_user:
            topics.check_car_id(user)
    table: dict[str, str] = {}
    if password_file is not None:
        try:
            table.update(parse_password_file(Path(password_file).read_text(), str(password_file)))
        except FileNotFoundError:
            raise MosquittoError(f"password file {password_file} does not exist") from None
        except AccountsError as exc:
            raise MosquittoError(str(exc)) from None
    table.update({user: hash_password(password) for user, password in accounts.items()})
    if (certfile is None) != (keyfile is None):
        raise MosquittoError("TLS needs both a certfile and a keyfile")
    folder.mkdir(parents=True, exist_ok=True)
    passwords = folder / "passwords"
    fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{user}:{hashed}\n" for user, hashed in sorted(table.items())))
    acl = folder / "acl"
    acl.write_text(acl_text(cloud_user))
    lines = [
        f"listener {port} {host}".rstrip(),
        "allow_anonymous false",
        f"password_file {passwords}",
        f"acl_file {acl}",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {folder}/",
        # saved every second, not on every change: the car keeps each event in its outbox a few
        # seconds past its PUBACK (unit.cloud_hold), so a crash within the second loses nothing;
        # saving on every change rewrites the whole database at each message, which a fleet's
        # reconnect storm cannot afford (benchmarks/storm.py: 10,000 cars did not drain in 20 min)
        "autosave_interval 1" if persistence else "",
        "set_tcp_nodelay true",  # else Nagle adds ~40 ms to every small QoS 1 exchange
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "max_queued_messages 100000",
        # QoS 1 messages a client may hold unacknowledged: the cloud acknowledges events only once
        # committed, so this is how many one worker can apply in one transaction (default 20)
        "max_inflight_messages 200",
    ]
    if certfile and keyfile:
        lines += [f"certfile {certfile}", f"keyfile {keyfile}", "tls_version tlsv1.2"]
        if cafile:
            lines.append(f"cafile {cafile}")
    config = folder / "mosquitto.conf"
    config.write_text("\n".join(line for line in lines if line) + "\n")
    return config


def _mosquitto_account() -> pwd.struct_passwd | None:
    """When we are root: the `mosquitto` system user to run the broker as, else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


def _readable_by_mosquitto(folder: Path) -> None:
    """The broker runs as `mosquitto` when we are root: let that user read (and save) here."""
    account = _mosquitto_account()
    if account is None:
        return
    for path in (folder, *folder.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A private Mosquitto on a free loopback port: `with Mosquitto({"car-1": "pw"}) as broker:`.

    `tls` makes its listener speak TLS with those files (copied into its folder so the broker's
    own user can read them). `stop()`/`start()` (or `kill()`) keep the folder, so a persistent
    broker restarts with its retained messages and queued sessions. `Mosquitto.from_config` runs
    a configuration written elsewhere (`kagi cloud mosquitto-config`)."""

    def __init__(
        self,
        accounts: Mapping[str, str],
        *,
        persistence: bool = False,
        tls: Tls | None = None,
        password_file: Path | None = None,
    ) -> None:
        self.accounts = dict(accounts)
        self.persistence = persistence
        self.tls = tls
        self.folder = Path(tempfile.mkdtemp(prefix="kagi-mosquitto-"))
        self.owned = True  # close() removes the folder
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        files: dict[str, str] = {}
        if tls is not None:
            (self.folder / "tls").mkdir()
            for name in ("certfile", "keyfile", "cafile"):
                source = getattr(tls, name)
                if source is not None:
                    files[name] = str(shutil.copy(source, self.folder / "tls" / f"{name}.pem"))
        self.config = write_config(
            self.folder,
            self.accounts,
            port=self.port,
            persistence=persistence,
            password_file=password_file,
            **files,
        )
        _readable_by_mosquitto(self.folder)
        atexit.register(self.close)

    @classmethod
    def from_config(cls, config: Path, *, port: int, host: str = "127.0.0.1") -> Mosquitto:
        """Run an existing configuration whose listener is `host:port`; close() leaves its
        folder in place (its files are made readable by Mosquitto's user when run as root)."""
        self = cls.__new__(cls)
        self.accounts, self.persistence, self.tls = {}, False, None
        self.config = Path(config).resolve()
        self.folder = self.config.parent
        self.owned = False
        self.port, self.host, self.proc = port, host, None
        _readable_by_mosquitto(self.folder)
        atexit.register(self.close)
        return self

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def start(self) -> Self:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise MosquittoError("mosquitto not found: install Debian's mosquitto package")
        log = open(self.folder / "broker.log", "ab")  # noqa: SIM115 (kept open for the process)
        # Started directly as its final user (not root dropping privileges, which would clear
        # the parent-death signal), so a test process that dies takes its broker with it.
        account = _mosquitto_account()
        run_as: dict[str, Any] = {}
        if account is not None:
            run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.config)],
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent(signal.SIGTERM),
            **run_as,
        )
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

    def reload(self) -> None:
        """SIGHUP: the broker reads its password file and ACL again (a car's new account)."""
        if self.proc is None or self.proc.poll() is not None:
            raise MosquittoError("mosquitto is not running")
        _readable_by_mosquitto(self.folder)
        self.proc.send_signal(signal.SIGHUP)

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
        if self.owned:
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

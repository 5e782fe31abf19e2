"""A throwaway PostgreSQL server on 127.0.0.1 in a temp dir, for tests, benchmarks and `make run`.

    with PgServer() as pg:
        url = pg.create_database("kagi")      # postgresql://kagi@127.0.0.1:PORT/kagi

It finds `initdb` and `postgres` under /usr/lib/postgresql/*/bin (the newest), in $KAGI_PG_BIN or
on PATH. initdb refuses to run as root, so as root the cluster is made and run as the `postgres`
system user (Debian's package creates it) in a temp dir that user owns. The server listens on a
free loopback port only (no Unix socket), trusts local connections (it holds throwaway data), and
dies with the process that started it: stopped on `stop()`/exit, and killed by the kernel
(PR_SET_PDEATHSIG) should that process die without cleaning up. Its directory is removed.

`python -m cloud.pgserver` starts one and prints its URL until Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import psycopg
from psycopg import sql

READY_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1


class PgServerError(RuntimeError):
    """The server could not be made or started; the message says why (with its log's tail)."""


def find_bin_dir() -> Path:
    """The directory holding initdb and postgres."""
    candidates: list[Path] = []
    if os.environ.get("KAGI_PG_BIN"):
        candidates.append(Path(os.environ["KAGI_PG_BIN"]))

    def major(p: Path) -> int:
        return int(p.parent.name) if p.parent.name.isdigit() else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "postgres").is_file():
            return c
    raise PgServerError(
        "PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin,"
        " in $KAGI_PG_BIN or on PATH; install them (Debian: apt-get install postgresql — "
        ".ci/run does this)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent(signum: int = signal.SIGQUIT) -> Callable[[], None] | None:
    """A preexec function making the child get `signum` (default SIGQUIT, PostgreSQL's immediate
    shutdown) when the thread that started it dies; None where prctl is unavailable. The kernel
    forgets it when the child changes its user: start it as its final user."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum)

    return preexec


class PgServer:
    """One PostgreSQL cluster of our own. `durable=False` (tests) turns fsync off."""

    def __init__(self, *, user: str = "kagi", durable: bool = False) -> None:
        self.user = user
        self.durable = durable
        self.bin_dir = find_bin_dir()
        self.dir: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}
        self._run_as: dict[str, object] = {}
        if os.geteuid() == 0:
            account = _system_account()
            self._run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            self._owner = (account.pw_uid, account.pw_gid)

    def _base_dir(self) -> str:
        """The temp dir, or /tmp when the server's user could not reach into it (a root-only
        $TMPDIR)."""
        base = Path(tempfile.gettempdir()).resolve()
        if self._run_as and not all(p.stat().st_mode & stat.S_IXOTH for p in (base, *base.parents)):
            return "/tmp"
        return str(base)

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> Self:
        t0 = time.monotonic()
        self.dir = Path(tempfile.mkdtemp(prefix="kagi-pg-", dir=self._base_dir()))
        atexit.register(self.stop)
        if self._run_as:
            os.chown(self.dir, *self._owner)
        data = self.dir / "data"
        initdb = [
            str(self.bin_dir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(
            initdb, cwd=self.dir, capture_output=True, preexec_fn=die_with_parent(), **self._run_as
        )  # type: ignore[call-overload]
        if done.returncode != 0:
            self.stop()
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            raise PgServerError(f"initdb failed ({done.returncode}): {output[-800:]}")
        self.timings["initdb_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        for _attempt in range(5):
            self.port = free_port()
            self._spawn(data)
            if self._wait_ready():
                break
            if "could not bind" not in self._log_tail():  # a port race is worth another try
                tail = self._log_tail()
                self.stop()
                raise PgServerError(f"postgres did not start: {tail}")
        else:
            tail = self._log_tail()
            self.stop()
            raise PgServerError(f"postgres found no free port: {tail}")
        self.timings["start_s"] = time.monotonic() - t1
        return self

    def _spawn(self, data: Path) -> None:
        assert self.dir is not None
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "60",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        args = [str(self.bin_dir / "postgres"), "-D", str(data)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            if self._run_as:
                os.chown(self.log_path, *self._owner)
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                args,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the terminal reaches us, not the server
                preexec_fn=die_with_parent(),
                **self._run_as,
            )

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.01)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace").strip()[-800:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Fast shutdown, then remove the directory. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- databases --------------------------------------------------------------------------

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (copied from `template` if given); returns its URL."""
        _check_name(name)
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            _check_name(template)
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        _check_name(name)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name: expected lower-case letters, digits and _, got {name!r}")


def _system_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PgServerError(
        "running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL "
        "as (initdb refuses root); install Debian's postgresql package, which creates `postgres`"
    )


def main() -> int:
    """Run a server until Ctrl-C (or SIGTERM), printing its URL: for `make run`."""
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        pg = PgServer(durable=True).start()
    except PgServerError as exc:
        print(f"kagi pgserver: {exc}", file=sys.stderr)
        return 2
    try:
        url = pg.create_database("kagi")
        print(url, flush=True)
        print(
            f"kagi pgserver: ready in {sum(pg.timings.values()):.2f} s "
            f"(initdb {pg.timings['initdb_s']:.2f} s); Ctrl-C stops and removes it",
            file=sys.stderr,
            flush=True,
        )
        signal.sigwait(stop)
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

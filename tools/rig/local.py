"""A rig whose cloud and car unit run on this machine: the sim rig, and a bench whose unit is
this computer. `LocalRig` starts the parts every such rig runs alike, the way an operator and a
technician would, and binds their drivers; a kind adds its car's parts (`tools/sim/rig.py`: the
simulated board and the hand; `tools/rig/real.py`: the real board, reader and fixture).

    kagi cloud demo            the demo fleet, in SQLite or PostgreSQL (`store`)
    the broker                 the cloud's embedded one, or Mosquitto over TLS with a password
                               file and the per-car ACL (`broker = "mosquitto"`): `kagi cloud
                               mosquitto-config`, reloaded once the car has its account
    kagi cloud serve           API + sync + mails, on the rig's clock
    the car's parts            the kind's: its board and reader
    kagi unit provision        the car unit's configuration, checked against board and broker
    kagi unit run              the car unit: its reader and board, MQTT through a relay the rig
                               can cut (the car's mobile signal)
    the mailbox                an SMTP server keeping what the cloud sends

The rig file's settings for these: `store` (sqlite, postgresql), `broker` (embedded, mosquitto).
The rig owns the clock: the cloud reads it from a file, the unit runs a manual clock, and
`advance(minutes=10)` moves both.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cloud.accounts import Accounts
from cloud.demo import CAR, STATION
from cloud.mosquitto import Mosquitto
from cloud.pgserver import PgServer
from tools.rig.car import Rig
from tools.rig.drivers import CloudView, RigClock, UnitPower
from tools.rig.mailbox import Mailbox
from tools.rig.phone import JST, next_mark
from tools.rig.processes import CloudProcess, free_port, run_kagi
from tools.rig.relay import Relay
from tools.rig.rigfile import RigError, RigFile
from tools.rig.tls import make_tls
from tools.rig.unit_process import UnitProcess

STORES = ("sqlite", "postgresql")
BROKERS = ("embedded", "mosquitto")

# A fresh PostgreSQL database for one rig: given its name, the URL (one server can serve many).
Databases = Callable[[str], str]


class LocalRig(Rig):
    """A rig in `folder`; `start()`, drive, `close()` (or use it as a context manager).
    `databases` makes the PostgreSQL database of a `store = "postgresql"` rig (default: a server
    of the rig's own). A kind implements the `_car_*` steps."""

    def __init__(
        self,
        folder: Path,
        rig: RigFile,
        start: dt.datetime | None = None,
        databases: Databases | None = None,
    ) -> None:
        super().__init__(rig)
        self.folder = folder
        self.store_kind = rig.setting("store", "sqlite", STORES)
        self.broker_kind = rig.setting("broker", "embedded", BROKERS)
        self.first = start or next_mark(dt.datetime.now(JST) + dt.timedelta(days=1))
        self.databases = databases
        self.accounts = folder / "broker.passwd"
        self.env = {"KAGI_BROKER_ACCOUNTS": str(self.accounts)}
        self.db = ""
        self.broker_port = 0  # where the car's broker listens (the relay leads there)
        self.broker_ca: Path | None = None  # the operator's CA, when the broker speaks TLS
        self.mails = self.mailbox = Mailbox()
        self.card_presenter = None
        self.unit_process: UnitProcess | None = None
        self.relay: Relay | None = None
        self.cloud_process: CloudProcess | None = None
        self._pg: PgServer | None = None  # the rig's own PostgreSQL server, when it has one
        self._mosquitto: Mosquitto | None = None
        self._mosquitto_dir: Path | None = None
        self._view: CloudView | None = None

    # ---- what a kind adds: its car's parts ------------------------------------------------------

    def _car_start(self) -> tuple[str, str]:
        """Start the car's own parts; the unit's board and reader URLs."""
        raise NotImplementedError

    def _car_before_unit(self) -> None:
        """What must be there before the unit starts (the reader's field)."""

    def _car_bind(self, unit: UnitProcess) -> None:
        """Bind the car's drivers: `switches`, `car_outputs`, `card_presenter`."""
        raise NotImplementedError

    def _car_close(self) -> None: ...

    def _car_logs(self) -> list[tuple[str, str]]:
        return []

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.mailbox.start()
        self.db = self._store()
        self.kagi("cloud", "demo", "--db", self.db)
        broker_args, self.broker_port, self.broker_ca = self._broker()
        self.unit_process = UnitProcess(self.folder / "unit")
        # the clock file is written before the cloud reads it
        self.clock = RigClock(self.folder / "clock", self.unit_process, self.first)
        self.cloud_process = CloudProcess(
            self.folder,
            free_port(),
            [
                "--db",
                self.db,
                *broker_args,
                "--clock",
                f"file:{self.folder / 'clock'}",
                "--smtp",
                f"smtp://127.0.0.1:{self.mailbox.port}",
            ],
            self.env,
        )
        self.cloud_process.start()
        self.relay = Relay(("127.0.0.1", self.broker_port))
        board, reader = self._car_start()
        self.provision(board, reader, self.broker_ca)
        self._car_before_unit()
        self.unit_process.start()
        self.unit = self.unit_process
        self.power = UnitPower(self.unit_process)
        self.network = self.relay
        self.cloud = self._view = CloudView(self.cloud_process, self.db, self.folder, self.env)
        self._car_bind(self.unit_process)
        self.wait_online()

    def _store(self) -> str:
        if self.store_kind == "sqlite":
            return str(self.folder / "cloud.db")
        if self.databases is None:
            self._pg = PgServer().start()
            self.databases = self._pg.create_database
        return self.databases(f"rig_{secrets.token_hex(6)}")  # a name no other rig has

    def _broker(self) -> tuple[list[str], int, Path | None]:
        """The cloud's broker arguments, the port the car's broker listens on, and the
        operator's CA the car checks it with (None: no TLS)."""
        if self.broker_kind == "embedded":
            port = free_port()
            return ["--broker-port", str(port)], port, None
        # Mosquitto runs as its own user: its folder must be one that user can reach
        self._mosquitto_dir = Path(tempfile.mkdtemp(prefix="kagi-rig-mosquitto-"))
        self._mosquitto_dir.chmod(0o755)
        conf = self._mosquitto_dir / "conf"
        tls = make_tls(conf / "tls")
        assert tls.cafile is not None
        port = free_port()
        files = ["--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile)]
        said = self._mosquitto_config(conf, port, [*files, "--cafile", str(tls.cafile)])
        found = re.search(r"password \(shown once\): (\S+)", said)
        if found is None:
            raise RigError(f"kagi cloud mosquitto-config gave no cloud password:\n{said}")
        self._mosquitto = Mosquitto.from_config(conf / "mosquitto.conf", port=port).start()
        args = ["--broker", f"mqtts://127.0.0.1:{port}", f"--broker-password={found.group(1)}"]
        return [*args, "--broker-ca", str(tls.cafile)], port, tls.cafile

    def _mosquitto_config(self, out: Path, port: int, tls: list[str]) -> str:
        """`kagi cloud mosquitto-config` as the operator runs it: the fleet's accounts, the ACL,
        the TLS listener on loopback."""
        return self.kagi(
            "cloud",
            "mosquitto-config",
            "--db",
            self.db,
            "--accounts",
            str(self.accounts),
            "--out",
            str(out),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            *tls,
        )

    def provision(self, board: str, reader: str, ca: Path | None) -> None:
        """`kagi unit provision` as a technician runs it, then the rig's own lines: the manual
        clock starting at the rig's time, the control socket. With Mosquitto, the operator
        writes its configuration again and reloads it so that the car's new account works, and
        the technician checks the file once more."""
        assert self.relay is not None
        config = self.folder / "unit" / "unit.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        scheme = "mqtt" if ca is None else "mqtts"
        tls = [] if ca is None else ["--cloud-ca", str(ca)]
        # exit 1 with the reader as the only failed check is right here: on udp the reader
        # "fails" until the hand's field is there; so does Mosquitto's login before its reload
        report = self.kagi(
            "unit",
            "provision",
            "--config",
            str(config),
            "--car-id",
            CAR,
            "--cloud-db",
            self.db,
            "--station",
            STATION,
            "--accounts",
            str(self.accounts),
            "--broker",
            f"{scheme}://127.0.0.1:{self.relay.port}",
            *tls,
            "--board",
            board,
            "--reader",
            reader,
            ok=(0, 1),
        )
        if self._mosquitto is None:
            _only_failed(report, (" reader ",))
        else:
            _only_failed(report, (" reader ", " broker "))
            self._reload_mosquitto()
            check = ("unit", "provision", "--check-only", "--config", str(config))
            _only_failed(self.kagi(*check, ok=(0, 1)), (" reader ",))
        text = config.read_text(encoding="utf-8")
        extra = f'clock = "manual"\nclock_start = {self.first.timestamp()}\n'
        extra += 'control = "control.sock"\n'
        text = re.sub(r"^control = .*\n", "", text, flags=re.M)
        config.write_text(text.replace("[unit]\n", "[unit]\n" + extra, 1), encoding="utf-8")

    def broker_account(self, user: str) -> str:
        """A broker account of the rig's own, named like a car (it reaches only that name's
        topics); its password. Mosquitto is reloaded to know it."""
        password = Accounts(self.accounts).create(user)
        if self._mosquitto is not None:
            self._reload_mosquitto()
        return password

    def _reload_mosquitto(self) -> None:
        """The operator writes Mosquitto's files again from the fleet's accounts, and reloads
        it (SIGHUP): a car's new account works from then on."""
        assert self._mosquitto is not None
        tls = _tls_options(self._mosquitto.config)
        self._mosquitto_config(self._mosquitto.folder, self._mosquitto.port, tls)
        self._mosquitto.reload()

    def close(self) -> None:
        super().close()
        if self.unit_process is not None:
            self.unit_process.close()
        self._car_close()
        if self.cloud_process is not None:
            self.cloud_process.stop()
        if self._view is not None:
            self._view.close()
        if self.relay is not None:
            self.relay.close()
        if self._mosquitto is not None:
            self._mosquitto.close()
        if self._mosquitto_dir is not None:
            shutil.rmtree(self._mosquitto_dir, ignore_errors=True)
        if self._pg is not None:
            self._pg.stop()
        self.mailbox.stop()

    def kagi(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        """Run one `kagi` command in the rig's folder, as the rig's operator."""
        return run_kagi(args, self.folder, self.env, ok)

    def logs(self) -> str:
        parts = []
        if self.cloud_process is not None:
            parts.append(("cloud", self.cloud_process.log_tail()))
        if self.unit_process is not None:
            parts.append(("unit", self.unit_process.log_tail(40)))
        parts += self._car_logs()
        if self._mosquitto is not None:
            parts.append(("mosquitto", self._mosquitto.log_tail()))
        return "\n".join(f"---- {name} ----\n{text}" for name, text in parts)


def _only_failed(report: str, parts: tuple[str, ...]) -> None:
    """Refuse a provisioning report where a part other than `parts` failed its check."""
    failed = [line for line in report.splitlines() if line.strip().startswith("FAILED")]
    if any(not any(part in line for part in parts) for line in failed):
        raise RigError(f"kagi unit provision: a part failed its check\n{report}")


def _tls_options(config: Path) -> list[str]:
    """The TLS files a Mosquitto configuration names, as `kagi cloud mosquitto-config` takes
    them."""
    options = []
    for line in config.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" ")
        if key in ("certfile", "keyfile", "cafile"):
            options += [f"--{key}", value]
    return options

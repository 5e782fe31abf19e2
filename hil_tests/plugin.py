"""The rig's pytest plugin: `--rig NAME` (or $KAGI_RIG; default `sim`), the `rig` fixture that
starts a whole car and its cloud for each test, and the `needs` marker.

    pytestmark = pytest.mark.needs("board", "card", "cloud", "clock")

    @pytest.mark.needs("power_cut")
    def test_the_trip_survives_a_power_cut(rig): ...

A rig file names a kind: `sim` rigs (`sim`, `sim-prod`) start every part as a real process on
this machine (`tools.sim.rig.SimRig`), a `real` rig the bench's parts (`tools.rig.real.RealRig`).
A test needing a feature its rig lacks is skipped with the rig's reason. PostgreSQL rigs share
one server per session, a database each. When a test fails, the tails of every part's log are
printed with its report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.pgserver import PgServer
from tools.rig.car import Rig
from tools.rig.local import LocalRig
from tools.rig.real import RealRig
from tools.rig.rigfile import FEATURES, RigError, RigFile, load_rig
from tools.sim.rig import SimRig

KINDS: dict[str, type[LocalRig]] = {"sim": SimRig, "real": RealRig}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rig",
        default=os.environ.get("KAGI_RIG", "sim"),
        help="the HIL rig: a name under tools/rig/rigs/ or a rig file (default: sim, $KAGI_RIG)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"needs(*features): rig features the test needs ({', '.join(FEATURES)})"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def rig_file(pytestconfig: pytest.Config) -> RigFile:
    try:
        return load_rig(str(pytestconfig.getoption("--rig")))
    except RigError as exc:
        raise pytest.UsageError(f"--rig: {exc}") from None


class Databases:
    """A fresh PostgreSQL database per rig, on one server for the session, started at first
    use (SQLite rigs never start it)."""

    def __init__(self) -> None:
        self.server: PgServer | None = None

    def __call__(self, name: str) -> str:
        if self.server is None:
            self.server = PgServer().start()
        return self.server.create_database(name)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="session")
def rig_databases() -> Iterator[Databases]:
    databases = Databases()
    yield databases
    databases.stop()


@pytest.fixture
def rig(
    rig_file: RigFile,
    rig_databases: Databases,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Rig]:
    for marker in request.node.iter_markers("needs"):
        for feature in marker.args:
            reason = rig_file.lacks(feature)
            if reason:
                pytest.skip(reason)
    started = KINDS[rig_file.kind](tmp_path / "rig", rig_file, databases=rig_databases)
    with started:
        yield started
        if request.node.stash.get(FAILED, False):
            print(started.logs())

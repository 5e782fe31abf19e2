"""Fixtures for the cloud's tests: one real PostgreSQL server per session (started only when a
test asks for it), and a `db` store parametrised over SQLite and PostgreSQL, each test on a fresh
database of its own, with a clock the test moves; for the pages' browser tests, a real
`kagi cloud serve` per test module (`site`, its options `site_args`) and a phone (`phone`)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import pytest

from cloud.pgserver import PgServer
from cloud.store import Store, open_store
from cloud.tests.console_help import desktop_driver
from cloud.tests.phone_help import phone_driver
from cloud.tests.sites import Site

BACKENDS = ("sqlite", "postgresql")
TEMPLATE = "kagi_template"  # migrated once; each test's database is a copy
_names = itertools.count(1)


class ManualClock:
    """The store's clock in tests: stands still until the test moves it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server on loopback, with a migrated template database."""
    with PgServer() as pg:
        open_store(pg.create_database(TEMPLATE)).close()
        yield pg


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _fresh_database(request: pytest.FixtureRequest, template: str | None) -> Iterator[str]:
    pg: PgServer = request.getfixturevalue("pg_server")
    name = f"test_{next(_names)}"
    url = pg.create_database(name, template=template)
    yield url
    pg.drop_database(name)


@pytest.fixture
def empty_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty database (no schema) on the backend."""
    if backend == "sqlite":
        yield str(tmp_path / "cloud.db")
    else:
        yield from _fresh_database(request, template=None)


@pytest.fixture
def db_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh database at the current schema, with nothing in it."""
    if backend == "sqlite":
        url = str(tmp_path / "cloud.db")
        open_store(url).close()
        yield url
    else:
        yield from _fresh_database(request, template=TEMPLATE)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC))


@pytest.fixture
def db(db_url: str, clock: ManualClock) -> Iterator[Store]:
    store = open_store(db_url, clock=clock, migrate=False)
    yield store
    store.close()


@pytest.fixture(scope="module")
def site_args() -> tuple[str, ...]:
    """More options of the module's `kagi cloud serve` (a test module overrides this)."""
    return ()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    site_args: tuple[str, ...],
) -> Iterator[Site]:
    """A real `kagi cloud serve` on the demo fleet, shared by the tests of one module."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    served = Site(tmp_path_factory.mktemp(name), extra=site_args)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def desktop() -> Iterator[object]:
    """A staff member's desktop browser for the console: headless Chromium."""
    with desktop_driver() as driver:
        yield driver


@pytest.fixture
def phone() -> Iterator[object]:
    """A driver's 360 px phone: headless Chromium (skipped where it is not installed)."""
    with phone_driver() as driver:
        yield driver

"""What the phone site's browser tests share: a driver at a 360 px phone (`phone`), logging in,
filling the site's forms as a person would, a plain HTTP client with a session and its CSRF
token (for what a browser cannot do, e.g. a forged or repeated POST), and the site's database
seen from the test (to check what landed, or to make a trip the car would have reported)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.clock import parse_clock
from cloud.store import Store, open_store
from cloud.tests.sites import Site
from tools.rig import browser as web

DOCS = Path(__file__).resolve().parents[2] / "docs"
JST = dt.timezone(dt.timedelta(hours=9))
PASSWORD = "a-drivers-password"


def make_phone() -> Any:
    absent = web.missing()
    if absent:
        pytest.skip(f"no {' and no '.join(absent)}: apt-get install chromium chromium-driver")
    return web.chromium(*web.PHONE)


@contextlib.contextmanager
def phone_driver() -> Iterator[Any]:
    driver = make_phone()
    try:
        yield driver
    finally:
        driver.quit()


def log_in(site: Site, driver: Any, account_id: str, lang: str = "ja") -> web.Page:
    """The account's password set by the operator, then logged in at the phone."""
    site.password(account_id, PASSWORD)
    page = web.Page(driver, site.url)
    enter(page, account_id, PASSWORD, lang)
    return page


def enter(page: web.Page, account_id: str, password: str, lang: str = "ja") -> None:
    """Log in on the phone site's login page, as far as the home page."""
    page.open(f"/login?lang={lang}")
    page.type("account_id", account_id)
    page.type("password", password)
    page.click("login")
    page.until(lambda: page.path == "/", "the home page")


def set_value(page: web.Page, element_id: str, value: str) -> None:
    """Set a date, time or select field (a date picker's typing depends on the locale)."""
    page.driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('change'));",
        element_id,
        value,
    )


def book(page: web.Page, car: str, start: dt.datetime, end: dt.datetime) -> None:
    """The booking page's form as a driver fills it, up to the quote page."""
    page.open(f"/book?day={start.date().isoformat()}")
    page.choose("book-car", car)
    set_value(page, "book-start-day", start.date().isoformat())
    page.choose("book-start", f"{start:%H:%M}")
    set_value(page, "book-end-day", end.date().isoformat())
    page.choose("book-end", f"{end:%H:%M}")
    page.click("book-quote")
    page.until(lambda: page.path == "/quote", "the quote page")


def reserve(page: web.Page, car: str, start: dt.datetime, end: dt.datetime) -> str:
    """Book through the pages; the new reservation's id."""
    book(page, car, start, end)
    page.click("reserve")
    page.until(lambda: page.path.startswith("/reservations/"), "the reservation's page")
    page.shows("notice", "予約しました")
    return page.data("reservation", "id")


class Client:
    """A logged-in browser without a browser: its cookies and the forms' CSRF token."""

    def __init__(self, site: Site, account_id: str) -> None:
        site.password(account_id, PASSWORD)
        self.http = httpx.Client(base_url=site.url, timeout=30)
        self.csrf = self.token("/login")
        done = self.http.post(
            "/login", data={"csrf": self.csrf, "account_id": account_id, "password": PASSWORD}
        )
        assert done.status_code == 303, done.text

    def token(self, path: str) -> str:
        found = re.search(r'name="csrf" value="([0-9a-f]{64})"', self.http.get(path).text)
        assert found is not None
        return found[1]

    def post(self, path: str, data: dict[str, str], **kw: Any) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.csrf, **data}, **kw)

    def close(self) -> None:
        self.http.close()


@contextlib.contextmanager
def database(site: Site) -> Iterator[Store]:
    """The site's database, on the site's clock (the cloud keeps running beside it)."""
    with open_store(site.db, clock=parse_clock(f"file:{site.clock_file}"), migrate=False) as s:
        yield s


def sent_commands(site: Site) -> int:
    """How many commands the cloud has sent to cars."""
    with contextlib.closing(sqlite3.connect(site.db)) as db:
        return int(db.execute("SELECT count(*) FROM car_commands").fetchone()[0])

"""What the console's browser tests share: a staff member at a desktop browser (headless
Chromium), logging in as a person would, and a plain HTTP client with a staff session and its
CSRF token (for what a browser cannot do: a forged POST, a call without the token)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cloud.demo import STAFF_PASSWORD
from cloud.tests.sites import Site
from tools.rig import browser as web


@contextlib.contextmanager
def desktop_driver() -> Iterator[Any]:
    """A staff member's desktop browser: headless Chromium, 1400 × 1000."""
    absent = web.missing()
    if absent:
        pytest.skip(f"no {' and no '.join(absent)}: apt-get install chromium chromium-driver")
    driver = web.chromium(1400, 1000)
    try:
        yield driver
    finally:
        driver.quit()


def staff_log_in(page: web.Page, staff_id: str, password: str = STAFF_PASSWORD) -> None:
    page.open("/console/login?lang=en")
    page.type("staff_id", staff_id)
    page.type("password", password)
    page.click("login")


def fleet_cell(page: web.Page, car: str, name: str) -> str:
    """What the fleet page shows of a car in one column (`data-cell`)."""
    found = page.driver.find_element(page.by.CSS_SELECTOR, f'#car-{car} [data-cell="{name}"]')
    return str(found.text)


def add_technician(
    site: Site, staff_id: str, car: str, start: dt.datetime, end: dt.datetime
) -> None:
    site.kagi(
        "add-staff", staff_id, "--name", "A. Tanaka", "--role", "technician", "--car", car,
        "--from", start.isoformat(), "--until", end.isoformat(), "--password-stdin",
        stdin=STAFF_PASSWORD + "\n",
    )  # fmt: skip


class StaffClient:
    """A staff member's browser session without a browser."""

    def __init__(self, url: str, staff_id: str, password: str = STAFF_PASSWORD) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.csrf = self.token("/console/login")
        done = self.http.post(
            "/console/login",
            data={"csrf": self.csrf, "staff_id": staff_id, "password": password},
        )
        assert done.status_code == 303, done.text

    def token(self, path: str) -> str:
        found = re.search(r'name="csrf" value="([0-9a-f]{64})"', self.http.get(path).text)
        assert found is not None
        return found[1]

    def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.csrf, **(data or {})}, **kw)

    def close(self) -> None:
        self.http.close()

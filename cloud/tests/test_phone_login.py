"""The phone site's door, in headless Chromium against a real `kagi cloud serve`: the first login
forces a new password (P-WEB-6), the session cookie and CSRF (P-WEB-5), repeated wrong passwords
slowed down (P-WEB-5), both languages and a 360 px screen (P-WEB-1)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from cloud.tests.phone_help import DOCS
from cloud.tests.sites import Site
from tools.rig import browser as web


def log_in(page: web.Page, account_id: str, password: str) -> None:
    page.open("/login")
    page.type("account_id", account_id)
    page.type("password", password)
    page.click("login")


def test_the_first_login_makes_the_driver_choose_a_new_password(site: Site, phone: Any) -> None:
    """P-WEB-6: the initial password of the mail logs in once, straight to the new-password
    page; the home page waits behind it; afterwards only the new password works."""
    site.initial_password("XXY00001002", "initial-from-mail")
    page = web.Page(phone, site.url)
    log_in(page, "XXY00001002", "initial-from-mail")
    page.until(lambda: page.path == "/password", "the new-password page")
    assert page.has("forced")
    page.open("/")  # the home page is not reachable yet
    page.until(lambda: page.path == "/password", "the new-password page again")

    page.type("current", "initial-from-mail")
    page.type("new", "short")
    page.type("again", "short")
    # past the browser's own check (minlength), the server's:
    phone.execute_script(
        "document.querySelectorAll('[minlength]').forEach(e => e.removeAttribute('minlength'))"
    )
    page.click("save")
    page.shows("error", "8")

    page.type("current", "initial-from-mail")
    page.type("new", "my-own-password")
    page.type("again", "my-own-password")
    page.click("save")
    page.until(lambda: page.path == "/", "the home page")
    page.shows("notice", "パスワード")
    assert page.has("reservations") or page.has("no-reservations")

    page.click("logout")
    page.until(lambda: page.path == "/login", "the login page")
    log_in(page, "XXY00001002", "initial-from-mail")
    page.shows("error", "IDまたはパスワードが違います")
    log_in(page, "XXY00001002", "my-own-password")
    page.until(lambda: page.path == "/", "the home page with the new password")


def test_the_session_cookie_is_http_only_and_a_change_without_csrf_is_refused(site: Site) -> None:
    """P-WEB-5: the session lives in an HTTP-only SameSite cookie; a form posted without its
    CSRF token (another site's page) changes nothing."""
    site.password("XXY00002001", "carols-password")
    with httpx.Client(base_url=site.url) as client:
        form = client.get("/login")
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', form.text)
        assert token is not None
        forged = client.post(
            "/login", data={"account_id": "XXY00002001", "password": "carols-password"}
        )
        assert forged.status_code == 403
        assert "kagi_session" not in client.cookies
        done = client.post(
            "/login",
            data={"csrf": token[1], "account_id": "XXY00002001", "password": "carols-password"},
        )
        assert done.status_code == 303
        cookie = next(
            c for c in done.headers.get_list("set-cookie") if c.startswith("kagi_session=")
        )
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        # a password change posted by another site's page (the cookie goes along, no token)
        forged = client.post(
            "/password", data={"current": "carols-password", "new": "x" * 10, "again": "x" * 10}
        )
        assert forged.status_code == 403
    with httpx.Client(base_url=site.url) as client:
        login = client.post(
            "/v1/login", json={"account_id": "XXY00002001", "password": "carols-password"}
        )
        assert login.status_code == 200, "the password was not changed by the forged form"


def test_repeated_wrong_passwords_are_slowed_down_and_reported(site: Site, phone: Any) -> None:
    """P-WEB-5: after a few wrong passwords the next attempts must wait, even with the right
    one, and the cloud's log reports it without the password."""
    site.password("XXY00001001", "alices-password")
    page = web.Page(phone, site.url)
    for attempt in range(5):
        log_in(page, "XXY00001001", f"guess-{attempt}")
        page.shows("error", "IDまたはパスワードが違います")
    log_in(page, "XXY00001001", "alices-password")
    page.shows("error", "秒後に再度お試しください")
    assert page.path == "/login"
    with httpx.Client(base_url=site.url) as client:
        api = client.post(
            "/v1/login", json={"account_id": "XXY00001001", "password": "alices-password"}
        )
    assert api.status_code == 429 and int(api.headers["retry-after"]) > 0
    for attempt in range(5, 10):
        with httpx.Client(base_url=site.url) as client:
            client.post("/v1/login", json={"account_id": "XXY00001001", "password": f"g{attempt}"})
    log = site.process.log_path.read_text()
    assert "wrong passwords" in log and "XXY00001001" in log
    assert "guess-" not in log and "alices-password" not in log


def test_the_site_fits_a_360_px_phone_in_both_languages(site: Site, phone: Any) -> None:
    """P-WEB-1: Japanese by default, English by the switch (kept), nothing wider than 360 px."""
    page = web.Page(phone, site.url)
    page.open("/login")
    assert page.text("login") == "ログイン"
    assert page.fits_width()
    page.screenshot(DOCS / "phone-login.png")
    page.click("lang-en")
    page.until(lambda: page.text("login") == "Log in", "the English page")
    page.open("/login")
    assert page.text("login") == "Log in", "the choice is kept"
    assert page.fits_width()
    page.click("lang-ja")
    page.until(lambda: page.text("login") == "ログイン", "the Japanese page")

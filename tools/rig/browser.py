"""A person at a browser: headless Chromium driven by Selenium, for the pages' tests.

`chromium()` starts one (the Debian chromium and chromedriver; Selenium Manager is never asked,
so nothing is downloaded); `missing()` names what is not installed, for a test's skip reason.
`Page` is the page as a person sees it: click a control by its id, type into a field, read
what an element shows, wait until it shows something.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.rig.wait import wait_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 20.0  # seconds a page may take for a step on a busy machine
PHONE = (360, 780)  # the narrowest phone the site must serve (SPEC P-WEB-1)


def missing() -> list[str]:
    """What a browser test needs and this machine lacks (empty: nothing)."""
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        absent.append("the selenium package")
    return absent


def chromium(width: int = 1400, height: int = 1000, lang: str = "ja") -> Any:
    """A headless Chromium of a person whose phone speaks `lang` (its Accept-Language)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={max(width, 500)},{height}")
    if width < 500:  # headless Chromium's windows are 500 px wide at least: emulate the phone
        metrics = {"width": width, "height": height, "pixelRatio": 2.0}
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    options.add_argument(f"--lang={lang}")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    options.binary_location = CHROMIUM
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


# whether a click on this element loads another page: a valid form's submit button, or a link
LEAVES = """
const e = arguments[0];
if (e.form && (e.type === "submit" || e.type === "image")) {
  return e.formNoValidate || e.form.noValidate || e.form.checkValidity();
}
const a = e.closest("a[href]");
return !!a && !a.hasAttribute("download") && !a.target && !a.getAttribute("href").startsWith("#");
"""


def _gone(element: Any) -> bool:
    """Whether the page that held `element` has been left."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException:  # asked mid-navigation ("unhandled inspector error"): ask again
        return False
    return False


class Page:
    """The page as a person sees it: click a control by its id, read what an element shows."""

    def __init__(self, driver: Any, base_url: str = "") -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.by, self.base_url = driver, By, base_url

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def el(self, element_id: str) -> Any:
        return self.driver.find_element(self.by.ID, element_id)

    def has(self, element_id: str) -> bool:
        return bool(self.driver.find_elements(self.by.ID, element_id))

    def text(self, element_id: str) -> str:
        return str(self.el(element_id).text)

    def click(self, element_id: str) -> None:
        """Click it; when that sends a form or follows a link, return once the next page is
        there, so that what is read next is never the page left behind."""
        control = self.el(element_id)
        leaving = self.driver.execute_script(LEAVES, control)
        before = self.driver.find_element(self.by.TAG_NAME, "html")
        control.click()
        if leaving:
            wait_for(lambda: _gone(before), f"the page after clicking #{element_id}", WAIT)

    def type(self, element_id: str, text: str) -> None:
        field = self.el(element_id)
        field.clear()
        field.send_keys(text)

    def choose(self, element_id: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.el(element_id)).select_by_value(value)

    def until(self, check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        def seen() -> Any:
            try:
                return check()
            except Exception:  # an element being replaced as the page renders: look again
                return None

        return wait_for(seen, f"the page to show {what}", timeout=timeout)

    def shows(self, element_id: str, part: str) -> None:
        self.until(lambda: part in self.text(element_id), f"{part!r} in #{element_id}")

    def data(self, element_id: str, key: str) -> str:
        return str(self.el(element_id).get_attribute(f"data-{key}"))

    def lit(self, element_id: str) -> bool:
        return "lit" in str(self.el(element_id).get_attribute("class")).split()

    @property
    def path(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(str(self.driver.current_url)).path

    def fits_width(self) -> bool:
        """Nothing scrolls sideways: the page is as wide as the window (SPEC P-WEB-1)."""
        width = self.driver.execute_script("return document.documentElement.scrollWidth")
        inner = self.driver.execute_script("return window.innerWidth")
        return bool(width <= inner)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path

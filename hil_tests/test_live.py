"""The live view (`kagi sim run`, `make run`): its JSON API over a real sim rig, its page in
headless Chromium driven by clicks, and `kagi sim run` as a process that leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hil_tests.steps import SCENARIO
from tools.cli import main
from tools.rig.browser import Page as BrowserPage
from tools.rig.browser import chromium
from tools.rig.browser import missing as browser_missing
from tools.rig.car import Rig
from tools.rig.processes import free_port, kagi_command
from tools.rig.rigfile import RigFile
from tools.rig.wait import wait_for
from tools.sim.cli import MARKER
from tools.sim.live.car import LiveCar
from tools.sim.live.server import LiveServer
from tools.sim.rig import SimRig

WAIT = 20.0  # seconds a page or a process may take for a step on a busy machine

pytestmark = pytest.mark.needs(*SCENARIO)


class Live:
    """The live view over a started rig, and an HTTP client for its API."""

    def __init__(self, car: LiveCar, server: LiveServer) -> None:
        self.car, self.server = car, server
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=60)

    def get(self) -> dict[str, Any]:
        response = self.http.get("/api/car")
        assert response.status_code == 200, response.text
        car: dict[str, Any] = response.json()
        return car

    def post(self, path: str, body: Any = None, status: int = 200) -> dict[str, Any]:
        response = self.http.post(path, json=body if body is not None else {})
        assert response.status_code == status, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def control(self, path: str, body: Any = None) -> dict[str, Any]:
        """A control that must succeed: the car as the page shows it after it."""
        car: dict[str, Any] = self.post(path, body)["car"]
        return car

    def until(self, check: Callable[[dict[str, Any]], Any], what: str) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            car = self.get()
            return car if check(car) else None

        found: dict[str, Any] = wait_for(seen, what)
        return found


@pytest.fixture
def live(rig: Rig) -> Iterator[Live]:
    if not isinstance(rig, SimRig):
        pytest.skip("the live view drives a sim rig")
    car = LiveCar(rig)
    car.setup_demo()
    car.start_ticker()
    server = LiveServer(car, port=free_port())
    server.start()
    view = Live(car, server)
    try:
        yield view
    finally:
        view.http.close()
        server.stop()
        car.close()


def prompt_ids(car: dict[str, Any]) -> list[str]:
    return [p["id"] for p in car["prompts"]]


def timers(car: dict[str, Any]) -> dict[str, float]:
    return {t["name"]: t["left_s"] for t in car["timers"]}


# ---- (a) the JSON API ---------------------------------------------------------------------------


def test_a_whole_trip_through_the_json_api(live: Live) -> None:
    # SPEC U-START-1, U-START-2, U-FB-1: the demo reservation's window is open at the start
    car = live.get()
    assert car["state"] == "idle" and car["lock"] == "locked" and car["immobilised"]
    assert car["reader"]["pattern"] == "green_blink"
    assert car["reservation"]["driver_id"] == "XXY00001002"
    assert car["reservation"]["status"] == "reserved"
    assert car["clock"]["car"] == car["reservation"]["window_opens"]
    assert car["key"] == {"in_box": True, "position": "return"} and car["cloud"]["connected"]

    # SPEC U-START-4, U-FB-2, U-FB-3: Bob's card → hazard ×2, doors unlocked, start prompt
    answer = live.post("/api/tap", {"card": "bob"})
    assert answer["result"] == {"state": "unlocked"}
    car = answer["car"]
    assert car["state"] == "unlocked" and car["lock"] == "unlocked"
    assert prompt_ids(car)[0] == "start_ok"
    assert car["prompts"][0]["ja"] == "ご利用を開始しました。"
    # SPEC U-SEC-1, U-SEC-2: one minute to open a door, ten to take the key, in car time
    assert timers(car)["door"] == 60 and timers(car)["key"] == 600
    live.until(lambda c: c["hazard"]["blinks"] == 2 and not c["hazard"]["on"], "two blinks")

    car = live.control("/api/door", {"door": "driver", "open": True})
    assert car["doors"]["driver"] is True and "door" not in timers(car)
    car = live.control("/api/door", {"door": "driver", "open": False})
    assert car["doors"]["driver"] is False

    # SPEC U-SEC-5: the key out of the box starts the use and releases the immobiliser
    car = live.control("/api/key", {"in_box": False})
    assert car["state"] == "in_use" and not car["immobilised"]
    assert car["key"]["in_box"] is False
    assert "key" not in timers(car)
    live.control("/api/brake", {"on": False})
    car = live.control("/api/engine", {"running": True})
    assert car["engine"] and not car["brake"]

    # SPEC U-END-4: an end asked from the phone now is refused, naming every failed check
    answer = live.post("/api/phone/end")
    assert answer["result"]["ok"] is False
    assert set(answer["result"]["data"]["failed"]) == {"engine", "key", "brake"}
    assert answer["car"]["state"] == "in_use"
    live.until(
        lambda c: {"check_engine", "check_key", "check_brake"} <= set(prompt_ids(c)),
        "the prompts naming the failed checks",
    )
    # SPEC U-FB-2: the hazards blink (five times) for the refused end, then go dark
    live.until(lambda c: c["hazard"]["blinks"] == 2 + 5 and not c["hazard"]["on"], "5 blinks")

    # SPEC U-END-1, U-END-2: engine off, brake set, key back at 返却, doors shut → orange
    live.control("/api/engine", {"running": False})
    live.control("/api/brake", {"on": True})
    car = live.control("/api/key", {"in_box": True})
    assert car["key"] == {"in_box": True, "position": "return"}
    assert car["reader"]["pattern"] == "orange_blink"
    assert "return_key" in timers(car)  # SPEC U-SEC-3: the key back in the box starts its timer

    # SPEC U-END-3, U-FGT-1: the card ends the trip: locked, immobilised, forgotten-item window
    answer = live.post("/api/tap", {"card": "bob"})
    car = answer["car"]
    assert car["state"] == "forgotten_item_window" and car["lock"] == "locked"
    assert car["immobilised"] and prompt_ids(car)[0] == "end_ok"
    assert timers(car)["forgotten"] == 600
    assert car["trip"]["ended_at"] == car["clock"]["car"]
    live.until(lambda c: c["hazard"]["blinks"] == 2 + 5 + 1, "one hazard blink at the end")
    # SPEC N-MAIL-1: the trip-end mail to Bob, and the reservation completed in the cloud
    car = live.until(
        lambda c: any("利用終了受付" in m["subject"] and "bob@" in m["to"] for m in c["mails"]),
        "the trip-end mail",
    )
    live.until(lambda c: c["reservation"]["status"] == "completed", "the reservation completed")

    # SPEC U-FGT-1, U-FGT-2: one tap unlocks once for a forgotten item, the next locks for good
    car = live.control("/api/tap", {"card": "bob"})
    assert car["lock"] == "unlocked" and prompt_ids(car)[0] == "forgotten_unlocked"
    assert car["immobilised"]
    car = live.control("/api/tap", {"card": "bob"})
    assert car["lock"] == "locked" and prompt_ids(car)[0] == "forgotten_locked"
    assert car["state"] == "idle" and car["reader"]["pattern"] == "dark"


def test_bad_requests_get_a_4xx_naming_what_was_wrong_and_change_nothing(live: Live) -> None:
    # X-SEC-3 for the page: every bad request is refused with what was wrong; the car is as it was
    before = live.get()
    cases: list[tuple[str, Any, int, str]] = [
        ("/api/door", {"door": "roof", "open": True}, 422, "door: Input should be 'driver'"),
        ("/api/door", {"door": "driver", "open": "yes"}, 422, "open: Input should be a valid"),
        ("/api/door", {"door": "driver", "opne": True}, 422, "opne: Extra inputs"),
        ("/api/tap", {"card": "carol"}, 422, "card: expected one of bob, alice, unknown"),
        ("/api/tap", {}, 422, "card: Field required"),
        ("/api/clock", {"minutes": -5}, 422, "minutes: expected more than 0"),
        ("/api/phone/fly", {}, 422, "operation: expected one of start, end, reunlock"),
        ("/api/phone/extend", {"minutes": 10}, 422, "minutes: expected a multiple of 15"),
        ("/api/phone/reserve", {"minutes": 20}, 422, "minutes: expected a multiple of 15"),
        ("/api/nowhere", {}, 404, "no such page or control: /api/nowhere"),
    ]
    for path, body, status, message in cases:
        error = live.post(path, body, status=status)["error"]
        assert message in error["message"], (path, body, error)
    for kind in ("application/json", "text/plain"):
        response = live.http.post("/api/door", content=b"{open", headers={"Content-Type": kind})
        assert response.status_code == 422
        assert "the body is not JSON" in response.json()["error"]["message"]
    # a refusal of the cloud keeps its code and both languages (C-EXT-1: only during the trip)
    error = live.post("/api/phone/extend", {}, status=422)["error"]
    assert error["code"] == "not_in_use" and error["message_ja"]
    after = live.get()
    for key in ("state", "lock", "doors", "key", "clock", "reservation", "prompts"):
        assert after[key] == before[key], key


def test_the_clock_the_signal_and_a_new_reservation(live: Live) -> None:
    # the rig owns the clock: +1 and +10 minutes move car and cloud together
    start = live.get()["clock"]["car_t"]
    car = live.control("/api/clock", {"minutes": 1})
    assert car["clock"]["car_t"] == start + 60 and car["clock"]["cloud"] == car["clock"]["car"]
    car = live.control("/api/clock", {"minutes": 10})
    assert car["clock"]["car_t"] == start + 660
    # "let time run": car time follows real time while on, and stops when off
    assert live.control("/api/clock/run", {"on": True})["clock"]["running"] is True
    live.until(lambda c: c["clock"]["car_t"] >= start + 662, "car time to run")
    car = live.control("/api/clock/run", {"on": False})
    stopped = live.until(lambda c: c["clock"]["car_t"] == car["clock"]["car_t"], "time to stop")
    time.sleep(1.5)  # a tick of the running clock would have moved it by now
    assert live.get()["clock"]["car_t"] == stopped["clock"]["car_t"]

    # S-SYNC-2: no signal — the car is offline, and still opens for the reservation it holds
    car = live.control("/api/signal", {"on": False})
    assert car["cloud"] == {"connected": False, "signal": False}
    assert live.post("/api/tap", {"card": "bob"})["car"]["state"] == "unlocked"
    car = live.control("/api/signal", {"on": True})
    assert car["cloud"] == {"connected": True, "signal": True}

    # C-CAR-1: a new reservation goes to the first slot 30 minutes clear of the running one
    first = car["reservation"]
    booked = live.post("/api/phone/reserve", {"minutes": 30})
    new = booked["result"]
    assert new["id"] != first["id"] and new["start"] >= first["end"]
    assert booked["car"]["reservation"]["id"] == new["id"]
    assert live.get()["reservation"]["status"] == "reserved"


# ---- (b) the page in headless Chromium ----------------------------------------------------------


def _browser() -> Any:
    absent = browser_missing()
    if absent:
        pytest.skip(f"no {' and no '.join(absent)}: apt-get install chromium chromium-driver")
    return chromium()


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _browser()
    try:
        yield driver
    finally:
        driver.quit()


class Page(BrowserPage):
    """The live view as a person sees it."""

    def done(self, control: str, then: str) -> None:
        """Click a control and wait for the page to say it was done."""
        self.click(control)
        self.until(
            lambda: then in self.text("message") and self.data("message", "kind") == "done",
            f"{then!r} done",
        )


@pytest.fixture
def sim_rig(rig_file: RigFile) -> str:
    """The rig file `kagi sim run` runs here: the one the scenarios run on, if it is a sim."""
    if rig_file.kind != "sim":
        pytest.skip(f"kagi sim runs sim rigs; rig {rig_file.name!r} is a {rig_file.kind} rig")
    return str(rig_file.path)


@pytest.fixture
def served(tmp_path: Path, sim_rig: str) -> Iterator[str]:
    """The page of `kagi sim run` (what `make run` runs), started as a person would."""
    command = Command(tmp_path / "run", sim_rig)
    try:
        yield command.wait_url()
        command.stop("sigterm")
        assert command.proc.returncode == 0, command.said
    finally:
        command.kill()


def test_a_whole_trip_by_clicking_the_page_in_headless_chromium(served: str, browser: Any) -> None:
    # the page that `make run` serves, driven as a person would: by clicking it
    page = Page(browser)
    browser.get(served)
    page.until(lambda: page.data("state", "state") == "idle", "the car idle")
    assert page.text("car-id") == "car-001" and "cloud online" in page.text("cloud")
    # SPEC U-START-2, U-FB-1: the reader blinks green, lit and dark in turn from the board's pins
    page.until(lambda: page.data("led-pattern", "pattern") == "green_blink", "green blink")
    page.until(lambda: page.lit("led-green") and page.lit("svg-led-green"), "the green LED lit")
    page.until(lambda: not page.lit("led-green"), "the green LED dark again")
    assert not page.lit("led-red")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", page.text("clock-time"))
    # the same fleet's phone site and console, one click away
    phone_site = str(page.el("phone-site").get_attribute("href"))
    assert httpx.get(phone_site + "login", timeout=30).status_code == 200
    assert str(page.el("console-site").get_attribute("href")) == phone_site + "console/"

    # SPEC U-START-4, U-FB-2: tap Bob's card → unlocked, hazards blink (live), start prompt
    page.done("btn-tap-bob", "tap bob → 開錠 unlocked")
    assert page.data("state", "state") == "unlocked" and page.data("lock", "lock") == "unlocked"
    assert "UNLOCKED" in page.text("svg-lock")
    page.until(lambda: page.lit("svg-hazard-fl") and page.lit("hazard-dot"), "the hazards lit")
    page.shows("hazard", "blinks so far: 2")
    assert "start_ok" in page.text("prompts") and "ご利用を開始しました。" in page.text("prompts")
    door_timer = browser.find_element(page.by.CSS_SELECTOR, "#timers tr[data-timer=door]")
    assert "1:00" in door_timer.text and "ドア開扉待ち" in door_timer.text

    page.done("btn-door-driver", "open driver")
    assert page.text("door-driver") == "開 open"
    assert "open" in str(page.el("svg-door-driver").get_attribute("class"))
    page.done("btn-door-driver", "close driver")
    assert page.text("door-driver") == "閉 closed"
    page.done("btn-key", "take the key")
    assert page.data("state", "state") == "in_use" and "key out" in page.text("key")
    assert page.text("immobiliser") == "解除 off"

    # SPEC U-END-4: with the engine running the end is refused, and the page says why
    page.done("btn-engine", "engine on")
    page.click("btn-phone-end")
    page.until(lambda: "the car refused" in page.text("message"), "the refused end")
    assert "engine" in page.text("message") and page.data("message", "kind") == "error"
    page.done("btn-engine", "engine off")
    page.done("btn-key", "return the key")
    assert page.data("state", "state") == "returning"
    assert page.data("led-pattern", "pattern") == "orange_blink"

    # SPEC U-END-2, U-END-3: the card ends it: locked, the forgotten-item window, the mail
    page.done("btn-tap-bob", "tap bob → 忘れ物受付 forgotten-item window")
    assert page.data("lock", "lock") == "locked" and "LOCKED" in page.text("svg-lock")
    assert page.text("immobiliser").startswith("作動")
    assert "end_ok" in page.text("prompts")
    page.shows("mails", "利用終了受付")
    # SPEC U-FGT-1, U-FGT-2: the phone unlocks once for a forgotten item and locks again
    page.done("btn-phone-forgotten_unlock", "phone: forgotten_unlock")
    assert page.data("lock", "lock") == "unlocked"
    page.done("btn-phone-forgotten_lock", "phone: forgotten_lock")
    assert page.data("lock", "lock") == "locked" and page.data("state", "state") == "idle"
    # a refusal shows on the page as an error, in both languages (C-EXT-1)
    page.click("btn-phone-extend")
    page.until(lambda: page.data("message", "kind") == "error", "the refusal")
    assert "not_in_use" in page.text("message")


# ---- the command ------------------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every living process under `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Command:
    """`kagi sim run` as a person runs it: in a process group of its own, as a terminal gives
    it, from a folder that is not the repository's."""

    def __init__(self, folder: Path, rig: str) -> None:
        self.folder = folder
        self.port = free_port()
        args = ["--port", str(self.port), "--folder", str(folder), "--rig", rig]
        self.proc = subprocess.Popen(
            [*kagi_command(), "sim", "run", *args],
            cwd=folder.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.said = ""

    def wait_url(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.said += line
            if "open http://" in line:
                break
        url = f"http://127.0.0.1:{self.port}/"
        assert f"open {url}" in self.said, self.said
        return url

    def stop(self, how: str) -> str:
        if how == "sigterm":
            self.proc.send_signal(signal.SIGTERM)
        else:  # Ctrl-C in a terminal: SIGINT to the whole foreground group
            os.killpg(self.proc.pid, signal.SIGINT)
        rest, _ = self.proc.communicate(timeout=30)
        self.said += rest
        return rest

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_the_command_serves_the_demo_car_and_stops_every_process(
    tmp_path: Path, sim_rig: str
) -> None:
    # two at once (they start in parallel): one stopped by SIGTERM, one by Ctrl-C
    commands = {how: Command(tmp_path / how, sim_rig) for how in ("sigterm", "ctrl-c")}
    try:
        for how, command in commands.items():
            url = command.wait_url()
            car = httpx.get(f"{url}api/car", timeout=30).json()
            assert car["state"] == "idle" and car["reader"]["pattern"] == "green_blink"
            assert car["reservation"]["status"] == "reserved"
            assert "<title>kagi live" in httpx.get(url, timeout=30).text
            # the same demo fleet on the phone site: Bob logs in with the demo password
            phone_site = re.search(
                r"the phone site (http://\S+/) \(log in as (\w+), password '(\w+)'", command.said
            )
            assert phone_site is not None, command.said
            assert car["sites"]["phone"] == phone_site[1]
            with httpx.Client(base_url=phone_site[1], timeout=30) as browser:
                form = browser.get("login").text
                token = re.search(r'name="csrf" value="(\w+)"', form)
                assert token is not None, form
                login = {"csrf": token[1], "account_id": phone_site[2], "password": phone_site[3]}
                assert browser.post("login", data=login).headers["location"] == "/"
                assert "XXY00001002" in browser.get("").text
            parts = descendants(command.proc.pid)
            assert len(parts) >= 3, parts  # the cloud, the board's MicroPython, the car unit
            command.stop(how)
            assert command.proc.returncode == 0, command.said
            assert "kagi sim: stopped" in command.said
            assert not [p for p in parts if alive(p)], f"{how}: processes left behind"
            assert (command.folder / MARKER).exists()
            assert (command.folder / "rig" / "cloud.log").exists()  # the logs are kept
    finally:
        for command in commands.values():
            command.kill()


def test_the_command_refuses_a_folder_not_its_own_and_a_port_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("mine", encoding="utf-8")
    assert main(["sim", "run", "--folder", str(tmp_path), "--port", str(free_port())]) == 2
    assert f"--folder {tmp_path}: not empty and not a run folder" in capsys.readouterr().err
    assert keep.read_text(encoding="utf-8") == "mine"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["sim", "run", "--folder", str(tmp_path / "run"), "--port", str(port)]) == 2
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

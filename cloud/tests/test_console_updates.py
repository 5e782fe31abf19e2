"""The console's updates page in headless Chromium against a real `kagi cloud serve --updates`
(SPEC O-OTA-1, O-OTA-3): the operator sees the published releases, starts a rollout for every
car with one canary first, pauses and resumes it; the canary's roll-back, reported by the car,
stops it by itself and the page says why; a viewer sees the page and is refused every change;
a form without its CSRF token and a bad canary count are refused, naming what was wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud.policy import default_policy
from cloud.sync.events import EventApplier
from cloud.tests.console_help import StaffClient, staff_log_in
from cloud.tests.phone_help import database
from cloud.tests.sites import Site
from cloud.tests.test_sync_events import ev
from tools.rig import browser as web
from tools.rig.releases import ReleaseKit

SHOTS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def site_args(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """An update repository with release 0.2.0 published, as the operator makes it."""
    kit = ReleaseKit(tmp_path_factory.mktemp("operator")).make()
    wheel = kit.folder / "kagi-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 kagi 0.2.0")
    kit.publish(wheel, "0.2.0")
    return ("--updates", str(kit.repo))


def test_an_operator_rolls_out_a_release_and_a_failing_canary_stops_it(
    site: Site, desktop: Any
) -> None:
    page = web.Page(desktop, site.url)
    staff_log_in(page, "ops")
    page.until(lambda: page.path == "/console/", "the fleet page")
    page.click("nav-updates")
    assert page.text("published") == "0.2.0"
    assert page.has("no-rollout")

    page.type("rollout-canaries", "several")  # bad input: named, nothing started
    page.click("rollout-submit")
    page.shows("error", "canaries: enter a number")
    page.open("/console/updates")
    assert page.has("no-rollout")

    page.type("rollout-canaries", "\b1")
    page.choose("rollout-version", "0.2.0")
    page.choose("rollout-cars", "all")
    page.click("rollout-submit")
    page.until(lambda: page.has("rollout-1"), "the rollout going")
    assert (page.data("rollout-1", "status"), page.data("rollout-1", "stage")) == (
        "running", "canary",
    )  # fmt: skip
    with database(site) as db:
        cars = [c.car_id for c in db.list_cars()]
    canary = cars[0]
    assert "canary" in page.text(f"rollout-car-{canary}")
    assert all(page.data(f"rollout-car-{c}", "step") == "pending" for c in cars)

    page.click("pause-rollout")
    page.until(lambda: page.data("rollout-1", "status") == "paused", "the rollout paused")
    page.click("resume-rollout")
    page.until(lambda: page.data("rollout-1", "status") == "running", "the rollout resumed")

    # the canary reports that its new version failed its check and it went back (O-OTA-3)
    with database(site) as db:
        data = {"step": "rolled_back", "version": "0.2.0", "at": 0.0, "state": "idle",
                "reason": "the new version did not pass its self-check in time"}  # fmt: skip
        db.ingest_events(canary, [ev(1, "update_step", data, db._now())],
                         EventApplier(db, default_policy()))  # fmt: skip
    page.open("/console/updates")
    assert page.has("no-rollout"), "a stopped rollout is not going any more"
    assert page.data("rollout-row-1", "status") == "stopped"
    assert page.data(f"rollout-car-{canary}", "step") == "rolled_back"
    assert not page.has("abort-rollout"), "nothing left to steer"
    assert f"canary {canary} rolled back: the new version did not pass" in page.text(
        "rollout-row-1"
    )
    page.screenshot(SHOTS / "console-updates.png")

    viewer = StaffClient(site.url, "viewer")
    assert viewer.http.get("/console/updates").status_code == 200
    refused = viewer.post("/console/updates/rollouts", {"version": "0.2.0", "cars": "all"})
    assert refused.status_code == 403
    no_token = viewer.http.post("/console/updates/rollouts/1/abort")
    assert no_token.status_code in (400, 403)
    with database(site) as db:
        assert [r.status for r in db.list_rollouts()] == ["stopped"]
        log = [(e.staff_id, e.action, e.result) for e in db.list_audit()]
    assert ("ops", "start_rollout", "ok") in log
    assert ("ops", "pause_rollout", "ok") in log and ("ops", "resume_rollout", "ok") in log
    assert ("viewer", "start_rollout", "refused:not_permitted") in log

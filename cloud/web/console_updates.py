"""The console's updates page (SPEC O-OTA-1, O-OTA-3), under `/console/updates`: the releases
the cloud serves, the rollout going now with each car's step, the rollouts before; an operator
starts a rollout (all cars or a station's, how many canaries first) and pauses, resumes or
aborts it. Reads need the `updates` action, changes `admin_change` (operators only); every
change is in the audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from cloud import rollouts
from cloud.service import Refused
from cloud.store.rollouts import ACTIONS
from cloud.web.console_base import ConsoleShown, ConsoleSite
from cloud.web.phone_base import Csrf

UPDATES = "/console/updates"
TEXTS = {
    "updates": ("ソフトウェア更新", "Updates"),
    "releases": ("公開中のリリース", "Published releases"),
    "no_repository": (
        "このクラウドは更新リポジトリを配信していません（kagi cloud serve --updates）",
        "This cloud serves no update repository (kagi cloud serve --updates)",
    ),
    "start_rollout": ("配信を開始", "Start a rollout"),
    "version": ("バージョン", "Version"),
    "which_cars": ("対象車両", "Cars"),
    "all_cars": ("全車両", "every car"),
    "canaries": ("先行車両の台数", "Canaries first"),
    "rollout_now": ("配信中", "Rollout going now"),
    "rollout_last": ("前回の配信", "Last rollout"),
    "no_rollout": ("配信中の更新はありません", "No rollout is going now"),
    "rollouts": ("これまでの配信", "Rollouts"),
    "stage": ("段階", "Stage"),
    "stage_canary": ("先行車両", "canaries"),
    "stage_rest": ("残りの車両", "the rest"),
    "canary": ("先行", "canary"),
    "step": ("進捗", "Step"),
    "reason": ("理由", "Reason"),
    "pause": ("一時停止", "Pause"),
    "resume": ("再開", "Resume"),
    "abort": ("中止", "Abort"),
    "started_by": ("開始", "Started by"),
}


def add_routes(
    routes: APIRouter, site: ConsoleSite, published: Callable[[], list[str]] | None
) -> None:
    site.texts.update(TEXTS)
    console, store, local = site.console, site.store, site.local

    @routes.get("/updates")
    def updates(request: Request) -> Response:
        who, me = site.staff(request)
        with site.refusals(request):
            console.require(who, "updates")
        active = store.active_rollout()
        recent = store.list_rollouts()
        if active is None and recent:  # the last one, with each car's step, until the next
            active = store.get_rollout(recent[0].rollout_id)
        context: dict[str, Any] = {
            "published": None if published is None else published(),
            "stations": store.list_stations(),
            "active": active,
            "rollouts": [
                {"r": r, "at": local(r.created_at), "updated": local(r.updated_at)} for r in recent
            ],
        }
        return site.page(request, "updates.html", context, staff=me)

    @routes.post("/updates/rollouts")
    def start(
        request: Request,
        csrf: Csrf = None,
        version: Annotated[str, Form(max_length=40)] = "",
        cars: Annotated[str, Form(max_length=80)] = "all",
        canaries: Annotated[str, Form(max_length=20)] = "2",
    ) -> Response:
        who = site.caller(request)

        def do() -> dict[str, Any]:
            try:
                first = int(canaries)
            except ValueError:
                raise Refused(422, "bad_number", "canaries: enter a number (e.g. 2)") from None
            station = None if cars == "all" else cars.removeprefix("station:")
            car_ids = [c.car_id for c in store.list_cars(station_id=station)]
            started = rollouts.start(store, published() if published else [], version, car_ids,
                                     first, who.account_id)  # fmt: skip
            return {"rollout_id": started.rollout_id, "cars": len(car_ids), "canaries": first}

        return site.change(request, csrf, "start_rollout", version, do, UPDATES)

    @routes.post("/updates/rollouts/{rollout_id}/{action}")
    def act(request: Request, rollout_id: int, action: str, csrf: Csrf = None) -> Response:
        if action not in ACTIONS:
            raise ConsoleShown(404, "unknown_action", f"no action {action!r}")

        def do() -> dict[str, Any]:
            return {"status": store.act_on_rollout(rollout_id, action).status}

        return site.change(request, csrf, f"{action}_rollout", str(rollout_id), do, UPDATES)

"""The cars' side of the update repository over HTTP (SPEC O-OTA-1, O-OTA-2): TUF metadata and
release files as python-tuf's client asks for them, under `/updates/metadata/` and
`/updates/targets/`. Files are served with HTTP ranges, so a car resumes a cut download."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

from cloud.update_repo import UpdateRepo

KINDS = ("metadata", "targets")


def add_update_routes(app: FastAPI, repo: UpdateRepo) -> None:
    @app.get("/updates/{kind}/{name:path}", include_in_schema=False)
    def served(kind: str, name: str) -> Response:
        path = repo.file(kind, name) if kind in KINDS else None
        if path is None:
            return JSONResponse(
                {"error": "not_found", "message": f"no {kind} file {name!r}"}, status_code=404
            )
        return FileResponse(path, headers={"cache-control": "no-store"})

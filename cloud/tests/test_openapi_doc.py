"""The API's documentation in docs/ is the one the app describes (no drift)."""

from __future__ import annotations

import json
from pathlib import Path

from cloud import openapi

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_matches_the_app():
    assert DOC.read_text(encoding="utf-8") == openapi.render(), "run `make docs`"


def test_every_operation_has_a_summary_and_documents_its_refusals():
    spec = json.loads(openapi.render())
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
            refusal = op["responses"]["422"]["content"]["application/json"]["schema"]
            assert refusal == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)

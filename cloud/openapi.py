"""The API's OpenAPI document, printed from the app itself (`make docs` writes
`docs/openapi.json`; a test checks the committed file is what this prints)."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

from cloud.api import create_app
from cloud.auth import Tokens
from cloud.policy import default_policy
from cloud.service import Cloud
from cloud.store import open_store


def render() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "spec.db"))
        try:
            cloud = Cloud(store, default_policy(), lambda: dt.datetime.now(dt.UTC))
            spec = create_app(cloud, Tokens(b"\0" * 32)).openapi()
        finally:
            store.close()
    return json.dumps(spec, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")

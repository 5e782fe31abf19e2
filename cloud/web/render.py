"""Renders the sites' Jinja2 templates (autoescaped) with what every page needs: the language and
its texts, the CSRF token of this browser, the signed-in account, and the language switch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from cloud.web.i18n import LANG_COOKIE, Texts, language
from cloud.web.session import CSRF_FIELD, Sessions

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("cloud.web", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,  # a missing value is a bug, never an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)


class Renderer:
    """One site's pages: its templates folder, texts and sessions."""

    def __init__(self, site: str, texts: Texts, sessions: Sessions) -> None:
        self.site = site
        self.texts = texts
        self.sessions = sessions

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
    ) -> HTMLResponse:
        lang = language(request)
        seed, new_seed = self.sessions.csrf_seed(request)
        values = {
            "lang": lang,
            "t": lambda key, **kw: self.texts.get(key, lang).format(**kw),
            "csrf_field": CSRF_FIELD,
            "csrf": self.sessions.csrf_token(seed),
            "path": request.url.path,
            "site": self.site,
            **(context or {}),
        }
        html = ENV.get_template(f"{self.site}/{template}").render(values)
        response = HTMLResponse(html, status_code=status)
        response.headers["cache-control"] = "no-store"
        response.headers["x-frame-options"] = "DENY"
        response.headers["referrer-policy"] = "same-origin"
        if new_seed:
            self.sessions.remember(response, seed)
        if request.query_params.get("lang") in ("ja", "en"):
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
        return response

"""The pages' two languages (SPEC P-WEB-1): Japanese and English, switchable.

The language is the `lang` cookie when set (the switch on every page sets it), else the best of
the browser's Accept-Language, else Japanese (the guide's). Texts are kept as `key: (ja, en)` in
each site's module; `Texts.get` gives the one of the page's language.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request

LANGS = ("ja", "en")
LANG_COOKIE = "kagi_lang"


def language(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in LANGS:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return "ja"


class Texts:
    """One site's texts in both languages; missing keys fail loudly in tests, not in silence."""

    def __init__(self, texts: Mapping[str, tuple[str, str]]) -> None:
        self._texts = dict(texts)

    def update(self, texts: Mapping[str, tuple[str, str]]) -> None:
        self._texts.update(texts)

    def get(self, key: str, lang: str) -> str:
        ja, en = self._texts[key]
        return ja if lang == "ja" else en

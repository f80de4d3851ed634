"""The message catalogue loader both pages use: Chinese first, English on request, no
translation at run time.

Each side keeps its own ``messages.json`` (every user-facing string of its pages in both
languages, with ``{name}`` placeholders) and its own language cookie; templates render from the
catalogue and the pages hand it to their scripts.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
HTML_LANG = {"zh": "zh-CN", "en": "en"}
LANGUAGE_COOKIE_DAYS = 366


def pick(*choices: str | None) -> str:
    """The first supported language among the choices (query, then cookie), else Chinese."""
    for choice in choices:
        if choice in LANGUAGES:
            return choice
    return DEFAULT


def script_json(value: object) -> str:
    """``value`` as JSON safe inside <script type="application/json">: no "<" may end the
    element early."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


class Catalogue:
    """One page's messages file and the cookie that remembers the reader's language."""

    def __init__(self, path: Path, cookie: str) -> None:
        self.path = path
        self.cookie = cookie

    @functools.cached_property
    def messages(self) -> dict[str, dict[str, str]]:
        """language → key → text, read once."""
        data: dict[str, dict[str, str]] = json.loads(self.path.read_text(encoding="utf-8"))
        return data

    def translate(self, lang: str, key: str, **params: Any) -> str:
        text = self.messages[lang].get(key) or self.messages[DEFAULT].get(key) or key
        return text.format(**params) if params else text

    def language(self, request: Request) -> str:
        """The reader's language: ``?lang=``, else the cookie, else Chinese."""
        return pick(request.query_params.get("lang"), request.cookies.get(self.cookie))

    def page_values(self, lang: str) -> dict[str, Any]:
        """What every template of either page is given to speak the reader's language."""

        def t(key: str, **params: Any) -> str:
            return self.translate(lang, key, **params)

        return {
            "lang": lang,
            "html_lang": HTML_LANG[lang],
            "t": t,
            "other_lang": "en" if lang == "zh" else "zh",
        }

    def remember(self, request: Request, response: Response, lang: str) -> None:
        """Keep a language chosen with ``?lang=`` for the next visits."""
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(
                self.cookie,
                lang,
                max_age=LANGUAGE_COOKIE_DAYS * 86400,
                samesite="strict",
                path="/",
            )

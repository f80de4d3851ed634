"""The dashboard's message catalogue: Chinese first, English on request.

``messages.json`` holds every user-facing string of the pages in both languages, with
``{name}`` placeholders; templates render from it and each page hands the same catalogue (of
its language) to its script.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
HTML_LANG = {"zh": "zh-CN", "en": "en"}
COOKIE = "hw_central_lang"


@functools.cache
def catalogue() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(
        Path(__file__).with_name("messages.json").read_text(encoding="utf-8")
    )
    return data


def pick(*choices: str | None) -> str:
    """The first supported language among the choices (query, then cookie), else Chinese."""
    for choice in choices:
        if choice in LANGUAGES:
            return choice
    return DEFAULT


def translate(lang: str, key: str, **params: Any) -> str:
    text = catalogue()[lang].get(key) or catalogue()[DEFAULT].get(key) or key
    return text.format(**params) if params else text


def script_catalogue(lang: str) -> str:
    """The catalogue of one language as JSON safe inside <script type="application/json">."""
    return json.dumps(catalogue()[lang], ensure_ascii=False).replace("<", "\\u003c")

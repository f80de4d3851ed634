"""The page's message catalogue: Chinese first, English on request (no translation at run time).

``messages.json`` holds every user-facing string of the hall page in both languages, with
``{name}`` placeholders; the server renders its templates from it and hands the same catalogue
to the page's script, which switches language in place.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
HTML_LANG = {"zh": "zh-CN", "en": "en"}
COOKIE = "hw_lang"


@functools.cache
def catalogue() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(
        (Path(__file__).with_name("messages.json")).read_text(encoding="utf-8")
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

"""The hall page's message catalogue (``messages.json`` beside this module) and its language
cookie, on the shared loader (``hallkit.i18n``). The page's script gets both languages and
switches in place."""

from __future__ import annotations

from pathlib import Path

from hallkit.i18n import Catalogue

MESSAGES = Catalogue(Path(__file__).with_name("messages.json"), cookie="hw_lang")

"""The dashboard's message catalogue (``messages.json`` beside this module) and its language
cookie, on the shared loader (``hallkit.i18n``). Each page hands the catalogue of its language
to its script."""

from __future__ import annotations

from pathlib import Path

from hallkit.i18n import Catalogue

MESSAGES = Catalogue(Path(__file__).with_name("messages.json"), cookie="hw_central_lang")

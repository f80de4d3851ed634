"""The dashboard's front end is served from the package: ECharts as vendored (checksum and
licences), nothing fetched from elsewhere, a catalogue complete in both languages."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx

from central.api.app import create_app
from central.store.db import make_engine

WEB = Path(__file__).resolve().parents[3] / "central" / "web"
VENDOR = WEB / "static" / "vendor" / "echarts"


def test_echarts_is_the_vendored_file_with_its_licences() -> None:
    note = (VENDOR / "VERSION.md").read_text(encoding="utf-8")
    declared = re.search(r"copied here as `echarts.min.js`\s*\(sha256 `([0-9a-f]{64})`", note)
    assert declared, "VERSION.md names the file's sha256"
    actual = hashlib.sha256((VENDOR / "echarts.min.js").read_bytes()).hexdigest()
    assert actual == declared.group(1)
    assert "Apache License" in (VENDOR / "LICENSE").read_text(encoding="utf-8")
    assert "Apache ECharts" in (VENDOR / "NOTICE").read_text(encoding="utf-8")
    for extra in ("LICENSE-d3", "LICENSE-zrender"):
        assert "Redistribution and use in source and binary forms" in (VENDOR / extra).read_text(
            encoding="utf-8"
        )


def test_swagger_ui_and_redoc_are_the_vendored_files_with_their_licences() -> None:
    for folder, files in (
        ("swagger-ui", ("swagger-ui-bundle.js", "swagger-ui.css")),
        ("redoc", ("redoc.standalone.js",)),
    ):
        vendor = WEB / "static" / "vendor" / folder
        note = (vendor / "VERSION.md").read_text(encoding="utf-8")
        for name in files:
            declared = re.search(rf"`{re.escape(name)}`\s*\(sha256 `([0-9a-f]{{64}})`", note)
            assert declared, f"{folder}/VERSION.md names {name}'s sha256"
            assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == declared.group(1)
            assert (vendor / f"{name}.LICENSE.txt").exists() or name.endswith(".css")
    swagger = WEB / "static" / "vendor" / "swagger-ui"
    assert "Apache License" in (swagger / "LICENSE").read_text(encoding="utf-8")
    assert "SmartBear" in (swagger / "NOTICE").read_text(encoding="utf-8")
    redoc = (WEB / "static" / "vendor" / "redoc" / "LICENSE").read_text(encoding="utf-8")
    assert "The MIT License" in redoc


def test_pages_and_scripts_load_nothing_from_other_hosts() -> None:
    own = [
        p
        for p in WEB.rglob("*")
        if p.suffix in (".html", ".js", ".css") and "vendor" not in p.parts
    ]
    assert len(own) >= 10
    for path in own:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
        assert "cdn" not in text.lower(), path
        assert "innerHTML" not in text, path  # every page builds its DOM from text nodes


def test_every_message_exists_in_chinese_and_english_and_the_pages_use_known_keys() -> None:
    catalogue = json.loads((WEB / "messages.json").read_text(encoding="utf-8"))
    assert set(catalogue["zh"]) == set(catalogue["en"])
    for key, text in catalogue["zh"].items():  # Chinese first: no English left in the zh set
        words = re.sub(r"\{\w+\}", "", text)
        if not key.startswith("lang.") and re.search(r"[A-Za-z]{3,}", words):
            assert re.search(r"[\u4e00-\u9fff]", text), (key, text)
    used = set()
    for path in [*WEB.glob("templates/*.html"), *WEB.glob("static/*.js")]:
        used |= set(re.findall(r"""\bt\(\s*'([a-z_]+\.[A-Za-z0-9_.]+)'""", path.read_text()))
    missing = {
        k
        for k in used
        if k not in catalogue["zh"]
        and not (  # 'fu.' + state
            k.endswith(".") and any(known.startswith(k) for known in catalogue["zh"])
        )
    }
    assert not missing, missing


async def test_static_files_are_served_by_central(tmp_path: Path) -> None:
    app = create_app(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central"
    ) as c:
        script = await c.get("/static/vendor/echarts/echarts.min.js")
        assert script.status_code == 200
        assert (
            hashlib.sha256(script.content).digest()
            == hashlib.sha256((VENDOR / "echarts.min.js").read_bytes()).digest()
        )
        assert (await c.get("/static/dashboard.css")).status_code == 200
        # without an aggregator (no session key) the pages say so instead of failing
        assert (await c.get("/login")).status_code == 503

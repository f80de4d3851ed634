"""hallwatch-central halls import|list: a CSV in Chinese or English (with or without a BOM),
every bad line reported at once, nothing imported from a file with a bad line."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from central.cli import app
from central.reporting.registry import HallEntry, registry
from central.store.db import make_engine

CHINESE = (
    "大厅编号,名称,级别,上级,行政区划代码,地址,办公时间\n"
    "ZJ,浙江省政务服务中心,省,,330000,杭州市西湖区,09:00-12:00;13:00-17:00\n"
    "HZ,杭州市民中心,市,ZJ,330100,杭州市江干区,\n"
    'XH,西湖区行政服务中心,区县,HZ,330106,"文三路 1 号, 西湖区",09:00-17:00\n'
)
ENGLISH = (
    "hall_id,name,level,parent_id,region_code\n"
    "YH,余杭区行政服务中心,county,HZ,330110\n"
    "YH-LP,良渚街道便民服务中心,township,YH,330110001000\n"
)


def _setup(tmp_path: Path) -> tuple[str, Path]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    config = tmp_path / "central.yaml"
    config.write_text(f"database_url: {url}\ndata_dir: {tmp_path / 'data'}\n")
    return url, config


def _stored(url: str) -> dict[str, HallEntry]:
    async def read() -> dict[str, HallEntry]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await registry(conn)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_import_chinese_with_bom_then_english_and_list(tmp_path: Path) -> None:
    url, config = _setup(tmp_path)
    runner = CliRunner()
    first = tmp_path / "halls.csv"
    first.write_bytes(CHINESE.encode("utf-8-sig"))
    result = runner.invoke(app, ["halls", "import", str(first), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "3 halls imported" in result.output
    stored = _stored(url)
    assert stored["XH"].address == "文三路 1 号, 西湖区"
    assert stored["ZJ"].level == "province" and stored["ZJ"].parent_id is None
    assert stored["ZJ"].opening_hours == "09:00-12:00;13:00-17:00"

    second = tmp_path / "more.csv"
    second.write_text(ENGLISH, encoding="utf-8")  # parents from the first file
    result = runner.invoke(app, ["halls", "import", str(second), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert set(_stored(url)) == {"ZJ", "HZ", "XH", "YH", "YH-LP"}

    result = runner.invoke(app, ["halls", "list", "-c", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ZJ\tprovince\t浙江省政务服务中心")
    assert "      YH-LP\ttownship\t良渚街道便民服务中心\t330110001000" in lines
    assert lines.index("  HZ\tcity\t杭州市民中心\t330100") < lines.index(
        "    XH\tcounty\t西湖区行政服务中心\t330106"
    )


def test_every_bad_line_is_reported_and_nothing_is_written(tmp_path: Path) -> None:
    url, config = _setup(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "hall_id,name,level,parent_id,region_code\n"
        "ZJ,浙江省政务服务中心,province,,330000\n"  # line 2: fine
        "HZ,杭州市民中心,city,ZJ,3301\n"  # line 3: region code too short
        "XH,西湖区,county,SH,330106\n"  # line 4: no such parent
        "\n"
        "NB,宁波,village,ZJ,330200\n"  # line 6: no such level
        "ZJ,again,province,,330000\n"  # line 7: duplicate
        "BJ,北京,city,XH,110000\n"  # line 8: a city under a county
        "QT,too,few\n",  # line 9: cells missing
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["halls", "import", str(bad), "-c", str(config)])
    assert result.exit_code == 2, result.output
    for line in (3, 4, 6, 7, 8, 9):
        assert f"line {line}:" in result.output, (line, result.output)
    assert "line 2:" not in result.output and "line 5:" not in result.output
    assert "nothing imported" in result.output
    assert _stored(url) == {}

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("编号,名称,级别,区划,备注\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["halls", "import", str(unknown), "-c", str(config)])
    assert result.exit_code == 2
    assert "missing column region_code" in result.output
    assert "unknown column '区划'" in result.output
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(CHINESE.encode("gbk"))
    result = CliRunner().invoke(app, ["halls", "import", str(gbk), "-c", str(config)])
    assert result.exit_code == 2 and "not UTF-8" in result.output

"""`hallwatch-central cases import` as a technician runs it: Excel's GB18030 with Chinese
headers, UTF-8 with a byte-order mark, bad rows with their line numbers, dry runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.cases.csvfeed import CsvError, decode, parse
from central.store.schema import case_revisions, case_suspensions, cases
from tests.central.cases.support import ID_NO, NAME, PHONE

CLI = str(Path(sys.executable).parent / "hallwatch-central")

# What an approval system's export looks like after a trip through Excel: Chinese headers, an
# extra 序号 column, slashed dates, "5个工作日", a multi-line 事项名称 in quotes.
EXCEL = (
    "序号,办件编号,事项编码,事项名称,实施部门,大厅,窗口,受理人工号,受理时间,法定时限,承诺时限,"
    "办结时间,办件状态,申请人,联系电话,证件号码,暂停记录\r\n"
    f"1,GB-001,330100-01,食品经营许可,市场监管局,H1,3,000101,2026/9/18 10:00,20,5个工作日,,在办,"
    f"{NAME},{PHONE},{ID_NO},\r\n"
    '2,GB-002,330100-02,"个体工商户\r\n设立登记",市场监管局,H1,4,000102,2026/9/21 9:30,10,3,'
    "2026/9/23 16:00,办结,,,,\r\n"
    "3,GB-003,330100-03,社保卡补办,人社局,H2,,000103,2026-09-22 11:00,5,,,暂停,李四,,,"
    "补正|2026-09-23 10:00|2026-09-24 09:00; 特别程序|2026-09-25 14:00|\r\n"
    f"4,GB-004,330100-04,医保登记,人社局,H2,7,000104,2026/9/22 11:00,5,,,在办,,123,,\r\n"
    "5,GB-005,330100-05,医保登记,人社局,H2,7,000104,2026/9/22,5,,,在办,,,,\r\n"
    "\r\n"
    "6,GB-006,330100-06,医保登记,人社局,H2,7,000104,2026/9/22 11:00,5,,,在办,,,1.10105E+17,\r\n"
    "7,GB-007,330100-07,医保登记,人社局,H2,7,000104,2026/9/22 11:00,5,,,暂停,,,,补正 2026-9-23\r\n"
)
GOOD = ["GB-001", "GB-002", "GB-003"]


def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "central.yaml"
    path.write_text(
        f"database_url: {database_url}\ndata_dir: {tmp_path / 'data'}\n", encoding="utf-8"
    )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "cases", "import", *args], capture_output=True, text=True, timeout=120
    )


async def arun(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, *args)


async def test_excel_gb18030_file_with_bad_rows(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    cfg = config(tmp_path, database_url)
    csv_file = tmp_path / "办件导出.csv"
    csv_file.write_bytes(EXCEL.encode("gb18030"))

    dry = await arun(str(csv_file), "--dry-run", "-c", str(cfg))
    assert dry.returncode == 1, dry.stderr
    assert "dry run" in dry.stdout and "created 3" in dry.stdout
    async with engine.connect() as conn:
        assert (await conn.execute(select(cases.c.case_no))).all() == []

    done = await arun(str(csv_file), "-c", str(cfg))
    assert done.returncode == 1, done.stderr
    assert "(gb18030)" in done.stdout
    assert "created 3" in done.stdout and "rejected 4" in done.stdout
    # line numbers are the file's: row 2 spans lines 3–4, the empty line 8 is skipped
    assert "第 6 行 GB-004: applicant.phone:" in done.stderr
    assert "第 7 行 GB-005: accepted_at:" in done.stderr
    assert "第 9 行 GB-006: applicant.id_no: 证件号码被 Excel 转成了科学计数法" in done.stderr
    assert "第 10 行 GB-007: suspensions: 格式应为" in done.stderr
    assert "ignored columns: 序号" in done.stderr
    assert PHONE not in done.stderr + done.stdout and ID_NO not in done.stderr + done.stdout

    async with engine.connect() as conn:
        stored = {r.case_no: r for r in await conn.execute(select(cases))}
        held = (
            await conn.execute(select(case_suspensions).order_by(case_suspensions.c.started_at))
        ).all()
    assert sorted(stored) == GOOD
    first = stored["GB-001"]
    assert (first.promised_days, first.source, first.applicant_masked) == (
        5,
        "csv",
        "王** 138****5678 1****************X",
    )
    assert first.accepted_at.isoformat() == "2026-09-18T02:00:00+00:00"  # Beijing 10:00
    assert stored["GB-002"].item_name == "个体工商户\r\n设立登记"
    assert stored["GB-002"].status == "completed" and stored["GB-003"].window is None
    assert [(s.reason, s.ended_at is None) for s in held] == [("补正", False), ("特别程序", True)]

    again = await arun(str(csv_file), "-c", str(cfg))
    assert "unchanged 3" in again.stdout and "created 0" in again.stdout
    async with engine.connect() as conn:
        assert len((await conn.execute(select(case_revisions))).all()) == 3


async def test_utf8_with_bom_and_english_headers(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    cfg = config(tmp_path, database_url)
    csv_file = tmp_path / "cases.csv"
    csv_file.write_bytes(
        "\ufeffcase_no,item_code,item_name,department,hall,window,staff,accepted_at,legal_days,"
        "promised_days,completed_at,status,applicant_phone\n"
        "U-1,X1,不动产登记,自然资源局,H1,1,000201,2026-09-18T10:00:00+08:00,15,5,,running,\n"
        "U-2,X1,不动产登记,自然资源局,H1,1,000201,2026-09-18 11:00,15,5,"
        "2026-09-21 10:00,completed,010-65123456\n".encode()
    )
    done = await arun(str(csv_file), "--encoding", "utf-8", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "(utf-8)" in done.stdout and "created 2" in done.stdout
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(cases.c.case_no, cases.c.applicant_masked).order_by(cases.c.case_no)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("U-1", None), ("U-2", "*******3456")]


def test_wrong_encoding_and_missing_columns_stop_the_import(tmp_path: Path) -> None:
    cfg = config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    gb = tmp_path / "gb.csv"
    gb.write_bytes(EXCEL.encode("gb18030"))
    wrong = run(str(gb), "--encoding", "utf-8", "-c", str(cfg))
    assert wrong.returncode == 2 and "第 1 行无法按 utf-8 解码" in wrong.stderr
    assert "gb18030" in wrong.stderr
    short = tmp_path / "short.csv"
    short.write_text("办件编号,事项名称\nA-1,x\n", encoding="utf-8")
    missing = run(str(short), "-c", str(cfg))
    assert missing.returncode == 2 and "item_code (事项编码)" in missing.stderr


def test_auto_encoding_and_header_errors() -> None:
    text, used = decode(EXCEL.encode("gb18030"))
    assert used == "gb18030" and text == EXCEL
    assert decode("\ufeff办件编号\n".encode())[0] == "办件编号\n"
    with pytest.raises(CsvError, match="empty"):
        parse("")
    table = parse(EXCEL)
    assert [line for line, _ in table.rows] == [2, 3, 5, 6, 7, 9, 10]
    with pytest.raises(CsvError, match="unknown encoding"):
        decode(b"", "latin-1")

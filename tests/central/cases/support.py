"""Rows and tokens for the case tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from central.security.tokens import Role, create_token

# A resident ID with a valid check digit (GB 11643 example) and a mobile number: neither may
# ever appear in a response or a table.
ID_NO = "11010519491231002X"
PHONE = "13812345678"
NAME = "王小明"


def case(case_no: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "case_no": case_no,
        "item_code": "330100-001",
        "item_name": "食品经营许可",
        "department": "市场监管局",
        "hall": "H1",
        "window": 3,
        "staff": "000123",
        "accepted_at": "2026-09-18 10:00",
        "legal_days": 10,
        "promised_days": 5,
        "status": "在办",
    }
    row.update(fields)
    return row


async def bearer(
    engine: AsyncEngine,
    role: Role,
    *,
    hall: str | None = None,
    department: str | None = None,
    label: str = "",
) -> dict[str, str]:
    token = await create_token(engine, role, hall=hall, department=department, label=label)
    return {"Authorization": f"Bearer {token}"}

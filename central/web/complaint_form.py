"""The public complaint form (网上投诉) and status page (办理结果查询): no login, no captcha, no
script. Rate limited per client address and for everyone together (``complaints:`` in
central.yaml), answering 429 with a Chinese page. Everything a citizen typed is shown through
the templates' autoescaping, never as markup."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select, union

from central.api.correlation_scope import calendar_for
from central.complaints import service
from central.complaints import store as complaint_store
from central.complaints.model import Channel, ComplaintIn, ComplaintState
from central.complaints.ratelimit import IntakeLimiter
from central.reporting.registry import display_name
from central.reporting.registry_cache import hall_names
from central.store.schema import gateways
from central.store.schema_halls import halls
from central.web import i18n
from central.web.context import require
from central.web.pages import render
from hallkit.clock import utc_now
from hallkit.login.brake import client_address
from hallkit.login.forms import read_form

router = APIRouter(include_in_schema=False)
FORM_LIMIT = 32 * 1024  # 2,000 characters of Chinese, percent-encoded, and the other fields
FIELDS = ("text", "hall", "window", "staff_name", "staff_number", "case_no", "day", "name", "phone")
ERRORS = {  # pydantic's error type → message key (the field's label goes in front)
    "string_too_long": "complaint.error.too_long",
    "string_too_short": "complaint.error.too_short",
    "too_long": "complaint.error.too_long",  # a constraint after a validator reports these
    "too_short": "complaint.error.too_short",
    "string_pattern_mismatch": "complaint.error.format",
    "int_parsing": "complaint.error.number",
    "date_from_datetime_parsing": "complaint.error.date",
    "date_parsing": "complaint.error.date",
    "greater_than_equal": "complaint.error.range",
    "less_than_equal": "complaint.error.range",
    "missing": "complaint.error.missing",
}


def limiter(request: Request) -> IntakeLimiter:
    """One per app: every public submission and status look-up passes it."""
    found: IntakeLimiter | None = getattr(request.app.state, "complaint_limiter", None)
    if found is None:
        config = service.settings(request.app.state.engine)
        found = IntakeLimiter(config.per_address_per_hour, config.global_per_minute)
        request.app.state.complaint_limiter = found
    return found


async def _form(request: Request) -> dict[str, str]:
    return await read_form(request, FORM_LIMIT)


async def _hall_choices(request: Request) -> list[tuple[str, str]]:
    async with request.app.state.engine.connect() as conn:
        ids = union(select(gateways.c.hall_id), select(halls.c.hall_id))
        found = sorted({str(r[0]) for r in await conn.execute(ids)})
        names = await hall_names(conn)
    return [(h, display_name(names, h)) for h in found]


def _messages(lang: str, error: ValidationError) -> list[str]:
    found = []
    for e in error.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        label = i18n.MESSAGES.translate(lang, f"complaint.field.{field}") if field else ""
        key = ERRORS.get(e["type"])
        if key is not None:
            text = i18n.MESSAGES.translate(
                lang, key, **{k: str(v) for k, v in (e.get("ctx") or {}).items()}
            )
        else:  # our own validators speak Chinese first already
            text = str(e["msg"]).removeprefix("Value error, ")
        found.append(f"{label}：{text}" if label else text)
    return found


async def _page(request: Request, name: str, status: int = 200, **values: Any) -> Response:
    ctx, lang = require(request), i18n.MESSAGES.language(request)
    config = service.settings(request.app.state.engine)
    return render(
        ctx, request, name, lang, status, None,
        ack_days=config.ack_days, reply_days=config.reply_days, **values,
    )  # fmt: skip


def _refused(request: Request) -> Response | None:
    """The 429 page when a limit is reached (None: go ahead)."""
    address = client_address(request, require(request).trusted_proxies)
    brake = limiter(request)
    refused = brake.admit(address)
    if refused is None:
        return None
    lang = i18n.MESSAGES.language(request)
    wait = brake.retry_after(address, refused)
    key = "complaint.limited.address" if refused == "address" else "complaint.limited.global"
    message = i18n.MESSAGES.translate(lang, key, minutes=max(1, (wait + 59) // 60))
    response = render(
        require(request), request, "complaint_limited", lang, 429, None, message=message
    )
    response.headers["Retry-After"] = str(wait)
    return response


@router.get("/complaint")
async def complaint_form(request: Request) -> Response:
    return await _page(
        request, "complaint_form", halls=await _hall_choices(request), values={}, errors=[]
    )


@router.post("/complaint")
async def submit_complaint(request: Request) -> Response:
    form = await _form(request)
    refused = _refused(request)
    if refused is not None:
        return refused
    values = {k: form.get(k, "").strip() for k in FIELDS}
    raw: dict[str, Any] = {k: v for k, v in values.items() if v}
    raw["text"] = values["text"]
    raw["consent"] = form.get("consent") == "1"
    try:
        given = ComplaintIn.model_validate(raw)
    except ValidationError as exc:
        lang = i18n.MESSAGES.language(request)
        return await _page(
            request,
            "complaint_form",
            422,
            halls=await _hall_choices(request),
            values=values | {"consent": raw["consent"]},
            errors=_messages(lang, exc),
        )
    engine = request.app.state.engine
    async with engine.begin() as conn:
        receipt = await complaint_store.receive(
            conn,
            given,
            channel=Channel.WEB,
            calendar=calendar_for(request, engine),
            config=service.settings(engine),
            now=utc_now(),
        )
    return await _page(request, "complaint_receipt", receipt=receipt)


@router.get("/complaint/status")
async def status_form(request: Request) -> Response:
    return await _page(request, "complaint_status", found=None, number="", error=None)


@router.post("/complaint/status")
async def status_lookup(request: Request) -> Response:
    form = await _form(request)
    refused = _refused(request)
    if refused is not None:
        return refused
    number, code = form.get("number", "")[:32].strip(), form.get("code", "")[:32]
    async with request.app.state.engine.connect() as conn:
        found = await complaint_store.public_lookup(conn, number, code)
    lang = i18n.MESSAGES.language(request)
    if found is None:
        error = i18n.MESSAGES.translate(lang, "complaint.status.not_found")
        return await _page(request, "complaint_status", 404, found=None, number=number, error=error)
    state = ComplaintState(found.state)
    return await _page(
        request,
        "complaint_status",
        found=found,
        state_label=i18n.MESSAGES.translate(lang, f"complaint.state.{state.value}"),
        number=number,
        error=None,
    )

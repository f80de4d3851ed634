"""The hall page itself and the login form."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edge.web import i18n
from edge.web.accounts import Permission
from edge.web.deps import WebContext, context, language, require, session_of
from edge.web.sessions import COOKIE, Session
from hallkit.login.brake import client_address
from hallkit.login.csrf import refuse_cross_origin

router = APIRouter()

FORM_LIMIT = 8192  # a user name and a password; anything bigger is not a login


def _safe_next(target: str | None) -> str:
    """Only a path on this gateway: never an address elsewhere (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _render(
    ctx: WebContext, request: Request, name: str, lang: str, status: int = 200, **values: Any
) -> HTMLResponse:
    def t(key: str, **params: Any) -> str:
        return i18n.translate(lang, key, **params)

    response = ctx.templates.TemplateResponse(
        request,
        name,
        {
            "lang": lang,
            "html_lang": i18n.HTML_LANG[lang],
            "t": t,
            "other_lang": "en" if lang == "zh" else "zh",
            **values,
        },
        status_code=status,
    )
    if request.query_params.get("lang") in i18n.LANGUAGES:
        _remember_language(response, lang)
    return response


def _remember_language(response: Response, lang: str) -> None:
    response.set_cookie(i18n.COOKIE, lang, max_age=366 * 86400, samesite="strict", path="/")


@router.get("/", response_class=HTMLResponse)
async def hall_page(
    request: Request, session: Annotated[Session, Depends(require(Permission.VIEW))]
) -> Response:
    ctx, lang = context(request), language(request)
    board = ctx.board
    # inside <script type="application/json">: no "<" may end the element early
    catalogue = json.dumps(i18n.catalogue(), ensure_ascii=False).replace("<", "\\u003c")
    return _render(
        ctx,
        request,
        "hall.html",
        lang,
        user=session.account.name,
        role=session.account.role.value,
        hall_name=board.hall_name or board.hall,
        gateway=board.gateway,
        catalogue=catalogue,
    )


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    ctx, lang = context(request), language(request)
    if session_of(request) is not None:
        return RedirectResponse(_safe_next(next), 303)
    return _render(ctx, request, "login.html", lang, next=_safe_next(next), error=None, username="")


async def _read_form(request: Request) -> dict[str, str]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > FORM_LIMIT):
        raise HTTPException(413, "请求过大 / request too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise HTTPException(413, "请求过大 / request too large")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    refuse_cross_origin(request)
    ctx, lang = context(request), language(request)
    form = await _read_form(request)
    name, password = form.get("username", "").strip(), form.get("password", "")
    target = _safe_next(form.get("next"))
    address = client_address(request, ctx.trusted_proxies)
    wait = ctx.brake.admit(name, address)  # counted before the check: parallel guesses too
    if wait:
        return _render(
            ctx,
            request,
            "login.html",
            lang,
            429,
            next=target,
            username=name,
            error=i18n.translate(lang, "login.throttled", seconds=wait),
        )
    async with ctx.login_slots:  # off the event loop: the devices' echoes must not wait
        account = await asyncio.to_thread(ctx.accounts.verify, name, password)
    if account is None:
        return _render(
            ctx,
            request,
            "login.html",
            lang,
            401,
            next=target,
            username=name,
            error=i18n.translate(lang, "login.failed"),
        )
    ctx.brake.succeeded(name, address)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        COOKIE,
        ctx.signer.issue(account),
        max_age=int(ctx.signer.lifetime_s),
        httponly=True,
        samesite="strict",
        secure=ctx.secure_cookies,
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    refuse_cross_origin(request)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response

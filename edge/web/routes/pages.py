"""The hall page itself and the login form."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edge.web import i18n
from edge.web.accounts import Permission
from edge.web.deps import WebContext, context, language, require, session_of
from edge.web.sessions import COOKIE, Session
from hallkit.i18n import script_json
from hallkit.login.csrf import refuse_cross_origin
from hallkit.login.forms import attempt_login, safe_next

router = APIRouter()


def _render(
    ctx: WebContext, request: Request, name: str, lang: str, status: int = 200, **values: Any
) -> HTMLResponse:
    response = ctx.templates.TemplateResponse(
        request, name, {**i18n.MESSAGES.page_values(lang), **values}, status_code=status
    )
    i18n.MESSAGES.remember(request, response, lang)
    return response


@router.get("/", response_class=HTMLResponse)
async def hall_page(
    request: Request, session: Annotated[Session, Depends(require(Permission.VIEW))]
) -> Response:
    ctx, lang = context(request), language(request)
    board = ctx.board
    catalogue = script_json(i18n.MESSAGES.messages)
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
        return RedirectResponse(safe_next(next, "/"), 303)
    return _render(
        ctx, request, "login.html", lang, next=safe_next(next, "/"), error=None, username=""
    )


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    refuse_cross_origin(request)
    ctx, lang = context(request), language(request)
    attempt = await attempt_login(
        request,
        brake=ctx.brake,
        trusted_proxies=ctx.trusted_proxies,
        slots=ctx.login_slots,
        # off the event loop: the devices' echoes must not wait
        verify=lambda name, password: asyncio.to_thread(ctx.accounts.verify, name, password),
        home="/",
    )
    account = attempt.account
    if account is None:
        return _render(
            ctx,
            request,
            "login.html",
            lang,
            attempt.status,
            next=attempt.target,
            username=attempt.name,
            error=i18n.MESSAGES.translate(lang, attempt.error or "", **attempt.error_params),
        )
    response = RedirectResponse(attempt.target, 303)
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

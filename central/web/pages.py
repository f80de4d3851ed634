"""The dashboard's pages and the login form. Pages are shells: their scripts fetch the same
JSON API every other client uses (with the session cookie), so the API's scope rules are the
pages' scope rules. Which pages a role gets follows from the same table
(central.security.access)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from central.api.cases import get_case
from central.api.wall import screen_of
from central.security import accounts
from central.security.access import Area, may, roles_with
from central.security.tokens import Role, with_subtree
from central.web import i18n
from central.web.context import WebContext, require, session_of
from central.web.sessions import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Session,
)
from hallkit.i18n import script_json
from hallkit.login import csrf
from hallkit.login.forms import attempt_login, read_form, safe_next

router = APIRouter(include_in_schema=False)

HOME = "/overview"  # where a login without a target lands
# Scripts only from this server (the JSON data blocks are not scripts); ECharts' tooltips set
# inline styles, hence 'unsafe-inline' for styles only. No framing: clickjacking a "confirm".
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# a page opens for the roles that reach the area of the data it shows (central.security.access)
OVERVIEW = roles_with(Area.HEALTH) | roles_with(Area.CASES) | roles_with(Area.EVALUATIONS)


@dataclass(frozen=True, slots=True)
class Page:
    name: str  # template, nav key, and script name
    path: str
    roles: frozenset[Role]


PAGES = (
    Page("overview", "/overview", OVERVIEW),
    Page("analysis", "/analysis", roles_with(Area.EVALUATIONS)),
    Page("reviews", "/reviews", roles_with(Area.EVALUATIONS)),
    Page("followups", "/followups", roles_with(Area.FOLLOWUP)),
    Page("bulletin", "/bulletin", roles_with(Area.EVALUATIONS)),
    Page("anomalies", "/anomalies", roles_with(Area.ANOMALIES)),
    Page("audits", "/audits", roles_with(Area.AUDITS)),
    Page("feed", "/feed", roles_with(Area.FEED)),  # 好差评 feed and outbox status
    Page("complaints", "/complaints", roles_with(Area.COMPLAINTS)),
)
CASE_PAGE = Page("case", "/cases", roles_with(Area.CASES))
WALL_PAGE = Page("wall", "/wall", roles_with(Area.WALL))
AUDIT_PAGE = Page("audit", "/audits", roles_with(Area.AUDITS))


class PageRefused(Exception):
    """A page the caller may not open (403) or that does not exist for them (404)."""

    def __init__(self, status: int, key: str) -> None:
        self.status, self.key = status, key


def render(
    ctx: WebContext,
    request: Request,
    name: str,
    lang: str,
    status: int = 200,
    session: Session | None = None,
    **values: Any,
) -> HTMLResponse:
    spoken = i18n.MESSAGES.page_values(lang)
    who = session.account if session else None
    nav = [p for p in PAGES if who and who.role in p.roles]
    here = request.url.path
    query = {k: v for k, v in request.query_params.items() if k != "lang"}
    other = spoken["other_lang"]
    switch = "".join(f"{quote(k)}={quote(v)}&" for k, v in query.items()) + f"lang={other}"
    response = ctx.templates.TemplateResponse(
        request,
        f"{name}.html",
        {
            **spoken,
            "page": name,
            "lang_href": f"{here}?{switch}",
            "user": who,
            "nav": nav,
            "csrf": session.csrf if session else "",
            "catalogue": script_json(i18n.MESSAGES.messages[lang]),
            "role_label": i18n.MESSAGES.translate(lang, f"role.{who.role.value}") if who else "",
            "scope_label": (who.hall or who.department or "") if who else "",
            **values,
        },
        status_code=status,
    )
    i18n.MESSAGES.remember(request, response, lang)
    response.headers.update(PAGE_HEADERS)
    return response


async def _page(request: Request, page: Page, **values: Any) -> Response:
    ctx, lang = require(request), i18n.MESSAGES.language(request)
    session = await session_of(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)
    if session.account.role not in page.roles:
        return render(
            ctx,
            request,
            "refused",
            lang,
            403,
            session,
            message=i18n.MESSAGES.translate(lang, "refused.role"),
        )
    return render(
        ctx,
        request,
        page.name,
        lang,
        session=session,
        config=script_json(values.pop("config", {})),
        **values,
    )


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/overview", 303)


@router.get("/overview")
async def overview_page(request: Request) -> Response:
    if request.query_params.get("screen") == "big":  # the old big screen's address
        return RedirectResponse("/wall", 303)
    session = await session_of(request)
    wall = session is not None and session.account.role in WALL_PAGE.roles
    return await _page(request, PAGES[0], wall=wall)


@router.get("/wall")
async def wall_page(request: Request) -> Response:
    """The 大屏: one full-viewport page for a wall screen, no navigation. An enrolled screen
    (its cookie) opens it without a login; anyone else needs a session that reaches the wall."""
    if await screen_of(request) is not None:
        ctx, lang = require(request), i18n.MESSAGES.language(request)
        return render(ctx, request, "wall", lang, config=script_json({"screen": True}))
    return await _page(request, WALL_PAGE, config={"screen": False})


@router.get("/complaints")
async def complaints_page(request: Request) -> Response:
    session = await session_of(request)
    routes = session is not None and may(session.principal, Area.COMPLAINT_ROUTE)
    return await _page(request, _named("complaints"), config={"may_route": routes})


def _named(name: str) -> Page:
    return next(p for p in PAGES if p.name == name)


@router.get("/analysis")
async def analysis_page(request: Request) -> Response:
    return await _page(request, PAGES[1])


@router.get("/reviews")
async def reviews_page(request: Request) -> Response:
    session = await session_of(request)
    may_decide = session is not None and may(session.principal, Area.REVIEW_DECIDE)
    return await _page(request, PAGES[2], config={"may_decide": may_decide})


@router.get("/followups")
async def followups_page(request: Request) -> Response:
    session = await session_of(request)
    who = None if session is None else session.principal
    config = {
        "may_appeal": who is not None and may(who, Area.APPEAL_FILE),
        "may_decide_appeal": who is not None and may(who, Area.APPEAL_DECIDE),
    }
    return await _page(request, PAGES[3], config=config)


@router.get("/bulletin")
async def bulletin_page(request: Request) -> Response:
    return await _page(request, PAGES[4])


@router.get("/anomalies")
async def anomalies_page(request: Request) -> Response:
    session = await session_of(request)
    may_decide = session is not None and may(session.principal, Area.REVIEW_DECIDE)
    return await _page(request, PAGES[5], config={"may_decide": may_decide})


@router.get("/audits")
async def audits_page(request: Request) -> Response:
    return await _page(request, PAGES[6])


@router.get("/audits/{task_id}")
async def audit_page(request: Request, task_id: int) -> Response:
    """One audit task; the page's script asks the API, which answers 404 outside one's reach."""
    return await _page(request, AUDIT_PAGE, task_id=task_id, config={"task_id": task_id})


@router.get("/feed")
async def feed_page(request: Request) -> Response:
    session = await session_of(request)
    outbox = session is not None and may(session.principal, Area.OUTBOX)
    return await _page(request, PAGES[7], config={"outbox": outbox})


@router.get("/cases/{case_no}")
async def case_page(request: Request, case_no: str) -> Response:
    """A case the caller may not see answers 404, exactly like one that does not exist."""
    ctx, lang = require(request), i18n.MESSAGES.language(request)
    session = await session_of(request)
    if session is not None and session.account.role in CASE_PAGE.roles:
        try:
            engine = request.app.state.engine
            who = await with_subtree(engine, session.principal)  # as the case API has it
            case = await get_case(request, engine, who, case_no)
        except HTTPException as exc:
            if exc.status_code in (404, 422):
                return render(
                    ctx,
                    request,
                    "refused",
                    lang,
                    404,
                    session,
                    message=i18n.MESSAGES.translate(lang, "refused.no_case"),
                )
            raise
        return await _page(
            request,
            CASE_PAGE,
            case_no=case.case_no,
            config={"case_no": case.case_no},
            evidence_request=may(session.principal, Area.EVIDENCE_REQUEST),  # supervisors
        )
    return await _page(request, CASE_PAGE)


# ------------------------------------------------------------------------------------ login


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    ctx, lang = require(request), i18n.MESSAGES.language(request)
    if await session_of(request) is not None:
        return RedirectResponse(safe_next(next, HOME), 303)
    return render(ctx, request, "login", lang, next=safe_next(next, HOME), error=None, username="")


@router.post("/login")
async def login(request: Request) -> Response:
    ctx, lang = require(request), i18n.MESSAGES.language(request)
    csrf.refuse_cross_origin(request)  # login CSRF: nobody else may log a browser in
    attempt = await attempt_login(
        request,
        brake=ctx.brake,
        trusted_proxies=ctx.trusted_proxies,
        slots=ctx.login_slots,
        verify=lambda name, password: accounts.verify(request.app.state.engine, name, password),
        home=HOME,
    )
    account = attempt.account
    if account is None:
        return render(
            ctx,
            request,
            "login",
            lang,
            attempt.status,
            next=attempt.target,
            username=attempt.name,
            error=i18n.MESSAGES.translate(lang, attempt.error or "", **attempt.error_params),
        )
    ticket = ctx.signer.issue(account)
    secure = request.url.scheme == "https"
    response = RedirectResponse(attempt.target, 303)
    response.set_cookie(
        SESSION_COOKIE,
        ticket.cookie,
        max_age=ticket.max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    # the page's script sends this back in X-CSRF-Token (double submit, bound to the session)
    response.set_cookie(
        CSRF_COOKIE,
        ticket.csrf,
        max_age=ticket.max_age,
        httponly=False,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await session_of(request)
    if session is not None:
        form = await read_form(request)
        csrf.require_token(request, session.csrf, form.get(CSRF_FIELD))
    response = RedirectResponse("/login", 303)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="strict")
    return response

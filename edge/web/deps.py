"""What every route needs: the shared context, the caller's session and language, role checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.templating import Jinja2Templates

from edge.hallboard import HallBoard
from edge.web import i18n
from edge.web.accounts import AccountStore, Permission
from edge.web.sessions import COOKIE, Session, SessionSigner
from hallkit.login.brake import IPNetwork, LoginBrake

TEMPLATES = Path(__file__).with_name("templates")


@dataclass
class WebContext:
    board: HallBoard
    accounts: AccountStore
    signer: SessionSigner
    brake: LoginBrake = field(default_factory=LoginBrake)
    secure_cookies: bool = False
    # peers whose X-Forwarded-For is believed (http.trusted_proxies); none by default
    trusted_proxies: tuple[IPNetwork, ...] = ()
    templates: Jinja2Templates = field(
        default_factory=lambda: Jinja2Templates(directory=str(TEMPLATES))
    )
    # scrypt needs 32 MiB and a good fraction of a second: one login at a time
    login_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, the API answers 401."""


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.hall
    return ctx


def session_of(request: Request) -> Session | None:
    return context(request).signer.check(request.cookies.get(COOKIE))


def language(request: Request) -> str:
    return i18n.MESSAGES.language(request)


def require(permission: Permission) -> Callable[[Request], Session]:
    """A dependency: the caller's session, if it may do ``permission``."""

    def check(request: Request) -> Session:
        session = session_of(request)
        if session is None:
            raise LoginRequired()
        if not session.account.may(permission):
            raise HTTPException(403, "权限不足 / not permitted")
        return session

    return check


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"

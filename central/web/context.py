"""What the dashboard needs besides the database: the session signer (its key from central's
data directory), the login brake, the templates.

The aggregator binds one context to its engine at start (``bind``); the app finds it through
the engine it serves, or through ``app.state.web`` when a caller set one (tests, or an app built
without an aggregator). Without either, the pages answer 503 and the API takes bearer tokens
only.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request, status
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncEngine

from central.config import CentralConfig
from central.security.tokens import Principal
from central.web.sessions import (
    CSRF_HEADER,
    Session,
    SessionSigner,
    check,
    load_or_create_key,
)
from hallkit.login import csrf
from hallkit.login.brake import IPNetwork, LoginBrake, parse_proxies

TEMPLATES = Path(__file__).with_name("templates")


@dataclass
class WebContext:
    signer: SessionSigner
    brake: LoginBrake = field(default_factory=LoginBrake)
    # peers whose X-Forwarded-For is believed (http.trusted_proxies); none by default
    trusted_proxies: tuple[IPNetwork, ...] = ()
    templates: Jinja2Templates = field(
        default_factory=lambda: Jinja2Templates(directory=str(TEMPLATES))
    )
    # scrypt takes 32 MiB and a good part of a second: two logins at a time on two cores
    login_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    @classmethod
    def from_data_dir(
        cls, data_dir: Path, trusted_proxies: tuple[IPNetwork, ...] = ()
    ) -> WebContext:
        return cls(SessionSigner(load_or_create_key(data_dir)), trusted_proxies=trusted_proxies)

    @classmethod
    def from_config(cls, config: CentralConfig) -> WebContext:
        return cls.from_data_dir(config.data_dir, parse_proxies(config.http.trusted_proxies))


_bound: weakref.WeakKeyDictionary[AsyncEngine, WebContext] = weakref.WeakKeyDictionary()


def bind(engine: AsyncEngine, context: WebContext) -> None:
    _bound[engine] = context


def bind_config(engine: AsyncEngine, config: CentralConfig) -> None:
    """The aggregator's one call: the dashboard's sessions use the key in its data dir."""
    bind(engine, WebContext.from_config(config))


def find(request: Request) -> WebContext | None:
    context = getattr(request.app.state, "web", None)
    if context is None:
        context = _bound.get(request.app.state.engine)
    return context


def require(request: Request) -> WebContext:
    context = find(request)
    if context is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "监察看板未配置（无会话密钥）/ dashboard not configured",
        )
    return context


async def session_of(request: Request) -> Session | None:
    context = find(request)
    return None if context is None else await check(request, context.signer)


async def cookie_principal(request: Request) -> Principal | None:
    """The caller behind the dashboard's session cookie (None: no valid session). A
    state-changing request must also carry the session's CSRF token."""
    session = await session_of(request)
    if session is None:
        return None
    csrf.require_token(request, session.csrf, request.headers.get(CSRF_HEADER))
    return session.principal

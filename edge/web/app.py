"""The hall page's FastAPI application."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge.hallboard import HallBoard
from edge.web.accounts import AccountStore
from edge.web.deps import LoginRequired, WebContext, login_url
from edge.web.routes import accounts as accounts_routes
from edge.web.routes import board as board_routes
from edge.web.routes import pages as page_routes
from edge.web.sessions import SessionSigner
from hallkit.login.brake import IPNetwork, LoginBrake
from hallkit.supervise import Supervisor, healthz

STATIC = Path(__file__).with_name("static")

# Everything comes from the gateway itself: the page must work in a hall with no internet,
# and nothing on it may load or send anything elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" makes form posts say Origin: null
]


class SecurityHeaders:
    """Adds the headers above to every response; pages and data are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + HEADERS
                if not static and not any(k == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    board: HallBoard,
    accounts: AccountStore,
    signer: SessionSigner,
    *,
    secure_cookies: bool = False,
    brake: LoginBrake | None = None,
    trusted_proxies: tuple[IPNetwork, ...] = (),
    tasks: Supervisor | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Hallwatch hall page", docs_url=None, redoc_url=None, openapi_url=None
    )  # nothing to advertise to the hall's LAN
    app.state.hall = WebContext(
        board,
        accounts,
        signer,
        brake or LoginBrake(),
        secure_cookies,
        trusted_proxies=trusted_proxies,
    )
    for routes in (page_routes, board_routes, accounts_routes):
        app.include_router(routes.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: LoginRequired) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/events":
            return JSONResponse({"detail": "需要登录 / login required"}, 401)
        return RedirectResponse(login_url(request), 303)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> Response:
        """For monitoring, no login: each supervised task's state; 503 once one is given up."""
        code, doc = healthz(tasks)
        return JSONResponse(doc, code)

    app.add_middleware(SecurityHeaders)
    return app

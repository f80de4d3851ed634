"""Cross-site request checks for pages that log in with a cookie.

Both pages set their session cookie SameSite=Strict; on top of that a state-changing request
whose ``Origin`` (else ``Referer``) names another site is refused, which also stops a foreign
page from logging a browser into someone else's account. A page whose scripts post with the
cookie also binds a CSRF token to the session and requires it back (``require_token``)."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import HTTPException, status
from starlette.requests import Request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same_origin(request: Request) -> bool:
    """False when the request says it comes from another origin (Origin, else Referer)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.netloc == host and parts.scheme in ("http", "https")


def refuse_cross_origin(request: Request) -> None:
    """403 for a request from another site."""
    if not same_origin(request):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "跨站请求被拒绝 / cross-origin request refused"
        )


def require_token(request: Request, expected: str, submitted: str | None) -> None:
    """Refuse a state-changing request from another site or without the session's token."""
    if request.method in SAFE_METHODS:
        return
    refuse_cross_origin(request)
    if not submitted or not hmac.compare_digest(submitted, expected):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "缺少或错误的 CSRF 令牌，请刷新页面 / missing or wrong CSRF token",
        )

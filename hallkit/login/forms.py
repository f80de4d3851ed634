"""The login form as both pages read it: a small urlencoded body, and a ``next`` target that
may only be a path on the same server."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import HTTPException
from starlette.requests import Request

FORM_LIMIT = 8192  # a user name and a password; anything bigger is not a login


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (first value of each); 413 past FORM_LIMIT, counted as it arrives."""
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


def safe_next(target: str | None, home: str) -> str:
    """Only a path on this server, never an address elsewhere (open redirect), and never the
    login form itself; ``home`` otherwise."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or target.startswith("/login")
    ):
        return home
    return target

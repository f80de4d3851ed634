"""The login form as both pages handle it: a small urlencoded body, a ``next`` target that may
only be a path on the same server, and one attempt counted by the brake before the password is
checked (``attempt_login``). Rendering the answer and setting the cookies stays with each page."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

from fastapi import HTTPException
from starlette.requests import Request

from hallkit.login.brake import IPNetwork, LoginBrake, client_address

A = TypeVar("A")

FORM_LIMIT = 8192  # a user name and a password; anything bigger is not a login


async def read_form(request: Request, limit: int = FORM_LIMIT) -> dict[str, str]:
    """The form's fields (first value of each); 413 past ``limit``, counted as it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, "请求过大 / request too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
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


@dataclass(frozen=True, slots=True)
class LoginAttempt(Generic[A]):
    """How a login went: ``account`` when the password was right; else the status and the
    message key (with its parameters) the form shows again."""

    name: str  # as typed, for the form to show again
    target: str  # where to go once logged in
    account: A | None
    status: int = 303
    error: str | None = None
    error_params: dict[str, Any] = field(default_factory=dict)


async def attempt_login(
    request: Request,
    *,
    brake: LoginBrake,
    trusted_proxies: Sequence[IPNetwork],
    slots: asyncio.Semaphore,
    verify: Callable[[str, str], Awaitable[A | None]],
    home: str,
) -> LoginAttempt[A]:
    """Read the form, take the brake's slot (counted before the check: parallel guesses too),
    check the password within ``slots`` (scrypt's memory), and tell the brake of a success."""
    form = await read_form(request)
    name, password = form.get("username", "").strip(), form.get("password", "")
    target = safe_next(form.get("next"), home)
    address = client_address(request, trusted_proxies)
    wait = brake.admit(name, address)
    if wait:
        return LoginAttempt(name, target, None, 429, "login.throttled", {"seconds": wait})
    async with slots:
        account = await verify(name, password)
    if account is None:
        return LoginAttempt(name, target, None, 401, "login.failed")
    brake.succeeded(name, address)
    return LoginAttempt(name, target, account)

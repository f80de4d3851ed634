"""The 大屏's API: snapshot (ETag), ticker (cursor), one hall's drill-down, a server-sent event
stream, and the one-time enrolment link that makes a browser a screen.

Callers: a dashboard session or token of a role the access table lets into ``Area.WALL``, or a
screen's cookie (role ``screen``, accepted by these routes only). A caller with a hall sees that
hall and the halls below it, everyone else every hall. Every answer comes from the process's
one ``WallHub`` (``central.api.wall_hub``): 50 screens cost one reading of the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from central.api.deps import Bearer, HallId, engine, principal
from central.api.overview import calendar_for
from central.api.wall_hub import Scope, WallHub
from central.reporting.wall import EVERY_HALL_LABEL, HallLive
from central.reporting.wall_hall import hall_detail
from central.security import screens
from central.security.access import REFUSED, Area, may
from central.security.tokens import Principal, Role, with_subtree

router = APIRouter(prefix="/api/v1/wall", tags=["wall"])
enroll_router = APIRouter(include_in_schema=False)

SCREEN_COOKIE = "hw_screen"
HEARTBEAT_S = 15.0
STREAM_WAKE_S = 5.0  # at the latest; a stream also wakes when key presses are due, or a change
STREAM_LIFETIME_S = 600.0  # then the browser reconnects (EventSource does) and is checked anew
RECONNECT_MS = 3000
DETAIL_TTL_S = 30.0


async def screen_of(request: Request) -> Principal | None:
    """The screen behind the request's cookie (its subtree filled in); None: not a screen, or
    revoked. The wall's page opens for it too."""
    screen = await screens.resolve(engine(request), request.cookies.get(SCREEN_COOKIE))
    return None if screen is None else await with_subtree(engine(request), screen)


async def wall_caller(request: Request, credentials: Bearer) -> Principal:
    """A screen (its cookie), or a dashboard caller whose role reaches the wall."""
    if credentials is None:
        screen = await screen_of(request)
        if screen is not None:
            return screen
    who = await principal(request, credentials)
    if not may(who, Area.WALL):
        raise HTTPException(status.HTTP_403_FORBIDDEN, REFUSED)
    return who


WallCaller = Annotated[Principal, Depends(wall_caller)]


def hub_of(request: Request) -> WallHub:
    hub: WallHub | None = getattr(request.app.state, "wall_hub", None)
    if hub is None:
        hub = request.app.state.wall_hub = WallHub(engine(request), calendar_for(engine(request)))
    return hub


def scope_of(who: Principal) -> Scope:
    return who.halls if who.hall else None


def label_of(hub: WallHub, who: Principal) -> str:
    return hub.figures.name(who.hall) if who.hall else EVERY_HALL_LABEL


@router.get("/snapshot", summary="The wall's halls, totals, 30-day trends, 红黑榜 (ETag)")
async def snapshot(request: Request, who: WallCaller) -> Response:
    hub = hub_of(request)
    await hub.refresh()
    snap = hub.snapshot(scope_of(who), label_of(hub, who))
    etag = f'"{snap.version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(snap.body, media_type="application/json", headers=headers)


@router.get("/ticker", summary="New bad reviews, cards, letters, offline halls after a cursor")
async def ticker(
    request: Request,
    who: WallCaller,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, object]:
    hub = hub_of(request)
    await hub.refresh()
    items, cursor = hub.ticks_after(after, scope_of(who), limit)
    return {"items": items, "cursor": cursor}


@router.get("/hall/{hall_id}", summary="One hall: departments, windows, cases running late")
async def hall(request: Request, who: WallCaller, hall_id: HallId) -> dict[str, object]:
    hub = hub_of(request)
    await hub.refresh()
    scope = scope_of(who)
    if (scope is not None and hall_id not in scope) or hall_id not in hub.figures.halls(scope):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "没有这个大厅 / no such hall")
    cache: dict[str, tuple[float, dict[str, object]]] = hub.details
    hit = cache.get(hall_id)
    if hit is not None and time.monotonic() - hit[0] < DETAIL_TTL_S:
        return hit[1]
    async with hub.detail_lock:
        hit = cache.get(hall_id)
        if hit is not None and time.monotonic() - hit[0] < DETAIL_TTL_S:
            return hit[1]
        fig = hub.figures
        async with engine(request).connect() as conn:
            doc = await hall_detail(
                conn, hall_id, fig.name(hall_id), fig.live.get(hall_id, HallLive()), fig.today
            )
        if len(cache) > 512:
            cache.clear()
        cache[hall_id] = (time.monotonic(), doc)
        return doc


@router.get("/stream", summary="Server-sent events: tick, snapshot {version}; heartbeat 15 s")
async def stream(
    request: Request,
    who: WallCaller,
    max_s: Annotated[
        float, Query(ge=0, le=3600, description="end the stream after this (0: first state)")
    ] = STREAM_LIFETIME_S,
) -> StreamingResponse:
    hub = hub_of(request)
    await hub.refresh()
    cookie = request.cookies.get(SCREEN_COOKIE) if who.role is Role.SCREEN else None
    return StreamingResponse(
        _events(request, hub, who, cookie, time.monotonic() + max_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request, hub: WallHub, who: Principal, cookie: str | None, until: float
) -> AsyncIterator[str]:
    scope, label, cursor = scope_of(who), label_of(hub, who), hub.cursor()
    watched = hub.watch(cookie) if cookie is not None else None
    try:
        yield f": hallwatch wall\nretry: {RECONNECT_MS}\n\n"
        async for chunk in _loop(request, hub, (scope, label, cursor), watched, until):
            yield chunk
    finally:
        if watched is not None:
            hub.unwatch(watched)


async def _loop(
    request: Request,
    hub: WallHub,
    start: tuple[Scope, str, str],
    watched: str | None,
    until: float,
) -> AsyncIterator[str]:
    scope, label, cursor = start
    version, beat = "", time.monotonic()
    while not await request.is_disconnected():
        now = time.monotonic()
        await hub.refresh()
        if watched is not None and not hub.alive(watched):
            return  # revoked: the stream ends; the page's next request is refused
        items, cursor = hub.ticks_after(cursor, scope, 200)
        for item in items:
            yield f"event: tick\ndata: {json.dumps(item, ensure_ascii=False)}\n\n"
        snap = hub.snapshot(scope, label)
        if snap.version != version:
            version = snap.version
            yield f"event: snapshot\ndata: {json.dumps({'version': version})}\n\n"
        if now - beat >= HEARTBEAT_S:
            beat = now
            yield ": heartbeat\n\n"
        if time.monotonic() >= until:
            return
        await hub.wait(min(STREAM_WAKE_S, hub.next_reading_s()))


@enroll_router.get("/wall/enroll")
async def enroll(request: Request, code: Annotated[str, Query(max_length=128)] = "") -> Response:
    """The one-time link of ``hallwatch-central screen add``: the browser becomes the screen."""
    cookie = await screens.enroll(engine(request), code)
    if cookie is None:
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>大屏登记</title>"
            "<p>登记链接无效、已用过或已过期，请重新生成。</p>"
            "<p>The enrolment link is unknown, used or expired; ask for a new one.</p>",
            status.HTTP_404_NOT_FOUND,
        )
    response = RedirectResponse("/wall", status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SCREEN_COOKIE,
        cookie,
        max_age=screens.COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response

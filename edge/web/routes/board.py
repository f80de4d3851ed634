"""The board's picture as JSON, its changes as server-sent events, and camera snapshots."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse

from edge.web.accounts import Permission
from edge.web.deps import context, require
from edge.web.sessions import COOKIE, Session
from hallkit.login.csrf import refuse_cross_origin

router = APIRouter()

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and the browser from giving up
RETRY_MS = 2000  # how soon the browser reconnects after the stream ends

Viewer = Annotated[Session, Depends(require(Permission.VIEW))]
Manager = Annotated[Session, Depends(require(Permission.MANAGE))]


@router.get("/api/board")
async def picture(request: Request, _: Viewer) -> dict[str, Any]:
    return context(request).board.picture()


def _event(message: dict[str, Any]) -> str:
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return f"event: {message['type']}\ndata: {data}\n\n"


@router.get("/events")
async def events(request: Request, _: Viewer) -> StreamingResponse:
    """``snapshot`` first, then ``update``s; ``reload`` when this reader fell behind (start
    over), ``logout`` when the session ended while the stream was open."""
    ctx = context(request)
    cookie = request.cookies.get(COOKIE)

    async def stream() -> AsyncIterator[str]:
        subscription = ctx.board.subscribe()  # here: a stream never started holds none
        try:
            yield f"retry: {RETRY_MS}\n\n"
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):  # not wait_for: see HallBoard.stop
                        message = await subscription.get()
                except TimeoutError:
                    if ctx.signer.check(cookie) is None:
                        yield _event({"type": "logout"})
                        return
                    yield ": keep-alive\n\n"
                    continue
                if message is None:
                    return
                yield _event(message)
                if message["type"] == "reload":
                    return
        finally:
            subscription.close()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _evidence(path: Path | None, missing: str) -> FileResponse:
    if path is None:
        raise HTTPException(404, missing)
    return FileResponse(path)


@router.get("/api/windows/{window}/snapshot")
async def snapshot(request: Request, window: int, _: Viewer) -> FileResponse:
    return _evidence(context(request).board.snapshot_file(window), "没有抓拍 / no snapshot")


@router.post("/api/windows/{window}/calibrate")
async def calibrate(request: Request, window: int, _: Manager) -> dict[str, Any]:
    """Nobody at the window: take its empty seat and counter as they are now (the manager
    confirms by the snapshot, ``/api/windows/{window}/calibration``)."""
    refuse_cross_origin(request)
    board = context(request).board
    try:
        detail = await board.calibrate(window)
    except LookupError as exc:
        raise HTTPException(404, f"没有摄像头对着此窗口 / {exc}") from None
    except ValueError as exc:  # refused: frozen stream, worker not answering, …
        raise HTTPException(409, f"校准失败 / calibration failed: {exc}") from None
    return {
        "window": window,
        "detail": detail,
        "snapshot": board.calibration_file(window) is not None,
    }


@router.get("/api/windows/{window}/calibration")
async def calibration(request: Request, window: int, _: Viewer) -> FileResponse:
    """The frame the window's last calibration (from the page or central) was taken from."""
    return _evidence(
        context(request).board.calibration_file(window), "尚未校准 / not calibrated from here yet"
    )

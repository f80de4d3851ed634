"""Runs the hall page inside the gateway process (uvicorn on the gateway's own event loop).

The gateway owns SIGTERM and SIGINT, so uvicorn is told not to take them. The socket is bound
here, before uvicorn starts: a port already in use is logged and the gateway carries on without
its page, because journaling the hall's events matters more than showing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from edge.config import GatewayConfig
from edge.hallboard import HallBoard
from edge.web.accounts import AccountStore
from edge.web.app import create_app
from edge.web.sessions import SessionSigner, load_or_create_key
from hallkit.login.brake import parse_proxies

if TYPE_CHECKING:
    from fastapi import FastAPI

    from hallkit.supervise import Supervisor
    from protocols.transport import TlsFiles

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 2.0  # open event streams end when the board stops; this is the backstop


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the gateway's own handlers stop it, and this server with it


class HallPageServer:
    def __init__(self, app: FastAPI, host: str, port: int, tls: TlsFiles | None = None) -> None:
        self.app, self.host, self.requested_port, self.tls = app, host, port, tls
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            return self.requested_port
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(False)
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
            ssl_certfile=str(self.tls.cert) if self.tls else None,
            ssl_keyfile=str(self.tls.key) if self.tls else None,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="hall page")
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise RuntimeError("the hall page server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the hall page server did not start")
            await asyncio.sleep(0.01)
        log.info("hall page on %s", self.url)

    async def wait(self) -> None:
        """Until the server ends (raises what ended it)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), SHUTDOWN_GRACE_S + 3)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None


async def start_hall_page(
    config: GatewayConfig, board: HallBoard, tasks: Supervisor | None = None
) -> HallPageServer | None:
    """The gateway's hall page, started; None (and logged) if it cannot listen.
    ``tasks``: the gateway's supervised tasks, shown by ``/healthz``."""
    http = config.http
    accounts = AccountStore.in_data_dir(config.data_dir)
    signer = SessionSigner(load_or_create_key(config.data_dir), accounts, http.session_hours * 3600)
    app = create_app(
        board,
        accounts,
        signer,
        secure_cookies=http.tls is not None,
        trusted_proxies=parse_proxies(http.trusted_proxies),
        tasks=tasks,
    )
    server = HallPageServer(app, http.host, http.port, http.tls)
    try:
        await server.start()
    except OSError as exc:
        log.error(
            "hall page: cannot listen on %s:%d (%s); the gateway runs without it",
            http.host,
            http.port,
            exc,
        )
        return None
    if not accounts.accounts():
        log.warning(
            "hall page: no accounts yet; create one with 'hallwatch-edge user add NAME -c <config>'"
        )
    return server

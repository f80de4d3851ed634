"""A TCP load balancer in front of a broker cluster, as HAProxy or a virtual IP would stand in
production: each new connection goes to the next backend that accepts it (round robin), so a
gateway whose node died reconnects to a live one at the same address. TLS passes through."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


class TcpBalancer:
    def __init__(self, backends: list[int], host: str = "127.0.0.1") -> None:
        self.backends = backends
        self.host = host
        self.port = 0
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = next(self._turn)
        for offset in range(len(self.backends)):
            port = self.backends[(first + offset) % len(self.backends)]
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, port), 2.0
                )
            except (OSError, TimeoutError):
                continue
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(OSError, ConnectionError):
            writer.close()


@contextlib.contextmanager
def balancer_process(backends: list[int]) -> Iterator[int]:
    """The balancer in a process of its own (its port): hundreds of TLS connections piped in
    the test's own process compete for one interpreter lock with what drives them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.tcp_balancer", *map(str, backends)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the balancer did not start: {line!r}")
        yield int(line)
    finally:
        process.terminate()
        process.wait(10)


async def _serve(backends: list[int]) -> None:
    balancer = TcpBalancer(backends)
    print(await balancer.start(), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve([int(port) for port in sys.argv[1:]]))

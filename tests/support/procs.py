"""Run the real gateway and central as subprocesses, the way systemd would."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import events, gateways
from edge.generator import WITNESS_MARK

BIN = Path(sys.executable).parent


@dataclass
class Proc:
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            self.argv, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_log(self, text: str, timeout: float = 120) -> None:
        """Until the process has written ``text`` to its log (it is ready for what follows);
        fails early, with the log, if the process dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            written = self.log.read_text(errors="replace") if self.log.exists() else ""
            if text in written:
                return
            if not self.alive:
                raise AssertionError(f"{self.argv[0]} stopped before {text!r}:\n{written}")
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} in {self.log} after {timeout} s")

    def kill9(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self, timeout: float = 15) -> int | None:
        if self.process is None:
            return None
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def edge_config(
    tmp: Path, port: int, *, hall: str = "H1", gateway: str = "gw1", **sections: Any
) -> Path:
    data: dict[str, Any] = {
        "hall": hall,
        "gateway": gateway,
        "data_dir": str(tmp / f"edge-{gateway}"),
        "broker": {"host": "127.0.0.1", "port": port, "keepalive_s": 5},
        "uplink": {"ack_timeout_s": 3, "state_interval_s": 2},
        "clock": {"assume_synced": True},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return write_yaml(tmp / f"edge-{gateway}.yaml", data)


def central_config(
    tmp: Path, port: int, url: str, *, http_port: int | None = None, instance: str = "c1"
) -> Path:
    data = {
        "database_url": url,
        "data_dir": str(tmp / "central"),
        "broker": {"host": "127.0.0.1", "port": port, "instance": instance},
        "http": {"enabled": http_port is not None, "port": http_port or 8600},
    }
    return write_yaml(tmp / f"central-{instance}.yaml", data)


def edge(config: Path, log: Path) -> Proc:
    return Proc([str(BIN / "hallwatch-edge"), "run", "-c", str(config)], log).start()


def central(config: Path, log: Path) -> Proc:
    return Proc([str(BIN / "hallwatch-central"), "serve", "-c", str(config)], log).start()


def prepare_central(url: str, registrations: list[tuple[str, str]]) -> None:
    async def go() -> None:
        engine = make_engine(url)
        await upgrade(engine)
        for hall, gateway in registrations:
            await register(engine, hall, gateway)
        await engine.dispose()

    asyncio.run(go())


def stored(url: str, gateway: str) -> tuple[list[int], list[dict[str, Any]], int]:
    """(seqs in order, bodies, committed_through) for one gateway, straight from the database."""

    async def go() -> tuple[list[int], list[dict[str, Any]], int]:
        engine = make_engine(url)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(events.c.seq, events.c.body)
                    .where(events.c.gateway_id == gateway)
                    .order_by(events.c.seq)
                )
            ).all()
            committed = (
                await conn.execute(
                    select(gateways.c.committed_through).where(gateways.c.gateway_id == gateway)
                )
            ).scalar() or 0
        await engine.dispose()
        return [r.seq for r in rows], [r.body for r in rows], committed

    return asyncio.run(go())


def committed_through(url: str, gateway: str) -> int:
    """The gateway's committed_through alone: what waits poll, where ``stored`` would read
    every event's body on each poll (seconds of CPU at 50,000 events, beside the central
    being waited for)."""

    async def go() -> int:
        engine = make_engine(url)
        async with engine.connect() as conn:
            committed = (
                await conn.execute(
                    select(gateways.c.committed_through).where(gateways.c.gateway_id == gateway)
                )
            ).scalar()
        await engine.dispose()
        return int(committed or 0)

    return asyncio.run(go())


def count_events(url: str, gateway: str) -> int:
    async def go() -> int:
        engine = make_engine(url)
        async with engine.connect() as conn:
            n = (
                await conn.execute(
                    select(func.count()).select_from(events).where(events.c.gateway_id == gateway)
                )
            ).scalar()
        await engine.dispose()
        return int(n or 0)

    return asyncio.run(go())


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.25
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


WITNESS_LINE = re.compile(rf"(?P<run>[0-9a-f]{{12}}) (?P<seq>\d+) (?P<n>\d+) {WITNESS_MARK}")


def read_witness(path: Path) -> dict[int, tuple[str, int]]:
    """seq → (generator run, n) for every event the generator saw confirmed durable."""
    out: dict[int, tuple[str, int]] = {}
    if path.exists():
        for line in path.read_text().split("\n")[:-1]:  # the last piece lacks its newline
            # a line cut by kill -9 mid-write lacks its mark: incomplete, not wrong
            if (m := WITNESS_LINE.fullmatch(line)) is not None:
                out[int(m["seq"])] = (m["run"], int(m["n"]))
    return out


WITNESS_END = f" {WITNESS_MARK}\n".encode()


def witness_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def witnessed(path: Path, since: int = 0) -> int:
    """How many whole witness lines the file holds past byte ``since`` (a ``witness_size``):
    what waits poll, where ``read_witness`` parses every line on each poll (seconds of CPU at
    hundreds of thousands of lines, beside the gateway being waited for). Each seq is
    witnessed once, so at ``since=0`` this is ``len(read_witness(path))``."""
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        handle.seek(since)
        return handle.read().count(WITNESS_END)


def gateway_online(url: str, gateway: str) -> bool | None:
    async def go() -> bool | None:
        engine = make_engine(url)
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(gateways.c.online, gateways.c.state_at).where(
                        gateways.c.gateway_id == gateway
                    )
                )
            ).first()
        await engine.dispose()
        return None if row is None or row.state_at is None else bool(row.online)

    return asyncio.run(go())


def gateway_state(url: str, gateway: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        engine = make_engine(url)
        async with engine.connect() as conn:
            state = (
                await conn.execute(select(gateways.c.state).where(gateways.c.gateway_id == gateway))
            ).scalar()
        await engine.dispose()
        return dict(state or {})

    return asyncio.run(go())


def journal_head(tmp: Path, gateway: str = "gw1") -> int:
    """The head seq of a gateway's journal (under tmp/edge-{gateway}), read beside the process."""
    path = tmp / f"edge-{gateway}" / "journal.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path) as db:
            row = db.execute("SELECT value FROM meta WHERE key='head_seq'").fetchone()
    except sqlite3.OperationalError:  # created, schema not yet committed
        return 0
    return int(row[0]) if row else 0

"""Device fuzz through the real gateway into central, on SQLite and PostgreSQL.

Random bytes — NUL and other control characters, invalid UTF-8, GB 2312 — are mixed into every
text field of the $QM feed and of the FF 68 bus (INVITE / SHOW_STAFF names and staff numbers
from another host, the staff names the gateway itself puts on the evaluators), beside message
numbers outside 1–999999 and a line past the bound. The simulators are ground truth: every line
the machine sent must be acknowledged (nothing stuck in its buffer) and stored exactly once at
central, every key press the evaluators saw echoed stored exactly once, and nothing
quarantined: the gateway journals only what central can store.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from central.store.db import make_engine
from central.store.schema import events, quarantine
from firmware_bridges.ff68.codec import CMD_INVITE, CMD_KEY, CMD_SHOW_STAFF, build_frame
from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from firmware_bridges.qm.codec import MAX_LINE, checksum
from firmware_bridges.qm.simulator import QueueMachineSimulator
from tests.support import procs
from tests.support.broker import Broker
from tests.support.loop_thread import LoopThread

N_EVALUATORS = 4
N_LINES = 90
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
TIME = b"20261121092210"
PIECES = [
    b"\x00",
    b"\x1b",
    b"\x7f",
    "\x85".encode(),
    b"\xff\xfe",
    b"\x80",
    b"\xe4\xb8",
    "不动产登记".encode("gb2312"),
    "社保".encode(),
    b"\r",
    b"*",
    b" ",
    b"\x00\x00",
]
# the fields of each type as the machine sends them ("Machine → gateway messages")
LAYOUTS: dict[str, list[bytes]] = {
    "TK": [b"A031", b"A01", TIME, b"3", "不动产登记".encode()],
    "CL": [b"A031", b"2", TIME],
    "RC": [b"A031", b"2", TIME],
    "NS": [b"A031", b"2", TIME],
    "ST": [b"A031", b"2", b"100233", TIME],
    "FN": [b"A031", b"2", b"100233", TIME],
    "TR": [b"A031", b"2", b"B02", TIME],
    "LI": [b"2", b"100233", TIME],
    "LO": [b"2", b"100233", TIME],
    "PS": [b"2", b"100233", TIME],
    "RS": [b"2", b"100233", TIME],
    "HB": [TIME, b"12"],
}
OUT_OF_RANGE = [0, 1_000_000, 123_456_789_012]


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test runs prepare_central first: start from the migrated template


def junk(rng: random.Random) -> bytes:
    parts = [*rng.choices(PIECES, k=rng.randint(1, 3)), rng.randbytes(rng.randint(0, 4))]
    rng.shuffle(parts)
    # '$' and '\n' are framing: a line holding them is a broken line, never acknowledged
    return b"".join(parts).replace(b"$", b"?").replace(b"\n", b"?")


def fuzzed_fields(rng: random.Random, kind: str, window: int) -> tuple[list[bytes], bool]:
    fields = [f.replace(b"2", str(window).encode()) if len(f) == 1 else f for f in LAYOUTS[kind]]
    if rng.random() < 0.25:
        return fields, False
    at = rng.randrange(len(fields))
    mix = junk(rng)
    fields[at] = rng.choice([mix, fields[at] + mix, mix + fields[at]])
    return fields, True


def qm_line(mseq: int, kind: str, fields: list[bytes]) -> bytes:
    body = b",".join([b"QM", str(mseq).encode(), kind.encode(), *fields])
    return b"$%s*%02X\r\n" % (body, checksum(body))


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


def central_rows(url: str) -> tuple[list[tuple[int, str, dict[str, Any]]], int]:
    async def go() -> tuple[list[tuple[int, str, dict[str, Any]]], int]:
        engine = make_engine(url)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(events.c.seq, events.c.kind, events.c.body)
                    .where(events.c.gateway_id == "gw1")
                    .order_by(events.c.seq)
                )
            ).all()
            held = (await conn.execute(select(func.count()).select_from(quarantine))).scalar()
        await engine.dispose()
        return [(r.seq, r.kind, r.body) for r in rows], int(held or 0)

    return asyncio.run(go())


@pytest.fixture
def sims() -> Iterator[LoopThread]:
    with LoopThread() as loop:
        yield loop


def test_fuzzed_device_text_is_stored_and_nothing_is_stuck(
    tmp_path: Path, broker: Broker, database_url: str, sims: LoopThread
) -> None:
    rng = random.Random(20261121)
    bus = EvaluatorBusSimulator(tmp_path / "ttyEVAL0", seed=3)
    qm = QueueMachineSimulator(pty_dir=tmp_path, link_name="ttyQM0")
    sims.run(bus.start())
    sims.run(qm.__aenter__())
    for i in range(N_EVALUATORS):
        sims.call(partial(bus.add, 0x81 + i))
    # the hall's own staff names carry junk too: the gateway shows them on the evaluators
    names = {"100233": "张\x00三\x1b", "100234": "不动产\u0085"}
    config = procs.edge_config(
        tmp_path,
        broker.port,
        queue={"transport": str(tmp_path / "ttyQM0")},
        staff_names=names,
        evaluator_buses=[
            {
                "port": str(tmp_path / "ttyEVAL0"),
                "poll_interval_s": 5,
                "devices": [{"addr": 0x81 + i, "window": i + 1} for i in range(N_EVALUATORS)],
            }
        ],
    )
    procs.prepare_central(database_url, [("H1", "gw1")])
    central = procs.central(
        procs.central_config(tmp_path, broker.port, database_url), tmp_path / "central.log"
    )
    gateway = procs.edge(config, tmp_path / "edge.log")
    try:
        procs.wait_until(lambda: procs.journal_head(tmp_path) >= N_EVALUATORS, 30, "gateway up")
        sent: dict[int, tuple[bytes, bool]] = {}  # mseq → (line without CRLF, junk mixed in)
        for n in range(N_LINES):
            kind = rng.choice(list(LAYOUTS))
            fields, dirty = fuzzed_fields(rng, kind, 1 + n % N_EVALUATORS)
            mseq = sims.call(qm.take_mseq)
            line = qm_line(mseq, kind, fields)
            sims.call(partial(qm.send_raw, line, mseq=mseq))
            sent[mseq] = (line[:-2], dirty)
            if n % 3 == 0:  # another host's frames with junk names and staff numbers
                addr = 0x81 + rng.randrange(N_EVALUATORS)
                data = bytes([1 + n % 255, 30]) + junk(rng)[:6].ljust(6, b"\x00") + junk(rng)
                cmd = CMD_INVITE if n % 2 else CMD_SHOW_STAFF
                frame = build_frame(addr, cmd, data[:28] if cmd == CMD_INVITE else data[2:28])
                sims.call(partial(bus.transmit, frame, corruptible=False))
                sims.call(lambda: bus.inject_noise(8))
            if n % 2 == 0:
                sims.call(partial(bus.press, 0x81 + n % N_EVALUATORS, 1 + n % 6))
        for mseq in OUT_OF_RANGE:
            line = qm_line(mseq, "CL", [b"A031", b"1", TIME])
            sims.call(partial(qm.send_raw, line, mseq=mseq))
            sent[mseq] = (line[:-2], False)
        mseq = sims.call(qm.take_mseq)  # a service name past the line bound
        line = qm_line(mseq, "TK", [b"A032", b"A01", TIME, b"4", "登记".encode() * 200])
        sims.call(lambda: qm.send_raw(line, mseq=mseq))
        sent[mseq] = (line[:MAX_LINE], True)

        try:
            procs.wait_until(
                lambda: not sims.call(lambda: qm.pending),
                30,
                "the machine to see every line acknowledged",
            )
        except AssertionError:
            stuck = sims.call(lambda: qm.pending)
            raise AssertionError(
                f"stuck in the machine: {[(m, sent.get(m)) for m in stuck]}; "
                f"gateway alive: {gateway.alive}"
            ) from None
        procs.wait_until(
            lambda: sims.call(
                lambda: all(e.echoed_at is not None or e.dropped for e in bus.events)
            ),
            30,
            "every press echoed",
        )
        head = procs.journal_head(tmp_path)
        procs.wait_until(
            lambda: procs.committed_through(database_url, "gw1") >= head,
            30,
            "central to commit the whole journal",
        )
        assert gateway.alive, "the gateway died"
        rows, quarantined = central_rows(database_url)
    finally:
        gateway.stop()
        central.stop()
        sims.run(qm.__aexit__(None, None, None))
        sims.run(bus.stop())

    assert quarantined == 0, "central quarantined something the gateway journaled"
    # the gateway goes on journaling (health, state) until it is stopped: every seq from 1 on,
    # at least the head waited for
    seqs = [seq for seq, _, _ in rows]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= head
    for _, kind, body in rows:
        bad = [t for t in _texts(body) if CONTROL.search(t)]
        assert not bad, f"{kind} stored text with control characters: {bad[:3]}"

    queue = [(kind, body) for _, kind, body in rows if kind.startswith("queue.")]
    by_mseq = Counter(body["mseq"] for _, body in queue)
    assert set(by_mseq) == set(sent) and set(by_mseq.values()) == {1}, "a line lost or doubled"
    for kind, body in queue:
        line, dirty = sent[body["mseq"]]
        assert (
            bytes.fromhex(body["raw_hex"]) == line
            if body.get("raw_hex")
            else body["raw"].encode() == line
        )
        if not dirty and body["mseq"] not in OUT_OF_RANGE:  # a clean line is a queue event
            assert kind == "queue.event", body
    assert {body["mseq"] for kind, body in queue if kind == "queue.fault"} >= set(OUT_OF_RANGE)
    assert sum(1 for _, dirty in sent.values() if dirty) >= N_LINES // 2

    echoed = sims.call(lambda: [(e.addr, e.data) for e in bus.echoed if e.cmd == CMD_KEY])
    keys = Counter(
        (b["addr"], bytes.fromhex(b["raw"])[6:-2])
        for _, k, b in rows
        if k == "evaluator.key" and "RETRANSMIT" not in b["marks"]
    )
    assert len(echoed) >= N_LINES // 2 - 5 and all(keys[e] == 1 for e in echoed)
    invited = sims.call(lambda: [i.name for invs in bus.invitations.values() for i in invs])
    print(
        f"{len(sent)} $QM lines ({sum(d for _, d in sent.values())} with junk), "
        f"{len(echoed)} keys, {len(invited)} invitations with names {set(invited)}"
    )

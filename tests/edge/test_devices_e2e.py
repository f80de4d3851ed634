"""The gateway with its real device bridges on pseudo-terminals, end to end into central.

The simulators play the devices in the test process; the gateway runs as its own process (so it
can be killed), talking to them over real ptys; central and a private Mosquitto are real too.
Ground truth comes from the simulators: which KEY frames they saw echoed, which $QM messages they
saw acknowledged.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from edge.invitations import InvitationRules
from firmware_bridges.ff68.codec import CMD_BOOT, CMD_KEY
from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from firmware_bridges.qm.simulator import QueueMachineSimulator
from tests.support import procs
from tests.support.broker import Broker
from tests.support.loop_thread import LoopThread

journal_head = procs.journal_head

N_EVALUATORS = 16
ADDRS = [0x81 + i for i in range(N_EVALUATORS)]
FRAME_KINDS = ("evaluator.key", "evaluator.invite_timeout", "evaluator.boot", "evaluator.fault")


class Hall:
    """The simulated devices of one hall and a gateway process wired to them."""

    def __init__(
        self,
        tmp: Path,
        broker: Broker,
        sims: LoopThread,
        *,
        corrupt_rate: float = 0.0,
        host_loss_rate: float = 0.0,
        seed: int = 7,
    ) -> None:
        self.tmp, self.broker, self.sims = tmp, broker, sims
        self.url = f"sqlite+aiosqlite:///{tmp / 'central.db'}"
        self.bus = EvaluatorBusSimulator(
            tmp / "ttyEVAL0", seed=seed, corrupt_rate=corrupt_rate, host_loss_rate=host_loss_rate
        )
        self.qm = QueueMachineSimulator(pty_dir=tmp, link_name="ttyQM0")
        sims.run(self.bus.start())
        sims.run(self.qm.__aenter__())
        self.config = procs.edge_config(
            tmp,
            broker.port,
            evaluator_buses=[
                {
                    "port": str(tmp / "ttyEVAL0"),
                    "poll_interval_s": 5,
                    "devices": [{"addr": 0x81 + i, "window": i + 1} for i in range(N_EVALUATORS)],
                }
            ],
            queue={"transport": str(tmp / "ttyQM0")},
        )
        self.gateway: procs.Proc | None = None
        procs.prepare_central(self.url, [("H1", "gw1")])
        self.central = procs.central(
            procs.central_config(tmp, broker.port, self.url), tmp / "central.log"
        )

    def start_gateway(self, log: str = "edge.log") -> None:
        self.gateway = procs.edge(self.config, self.tmp / log)

    def wait_up(self) -> None:
        """Until no evaluator's BOOT is still on the line and the gateway heard every evaluator.
        A BOOT read after an INVITE to that device closes the invitation (the device forgot it),
        so a test that invites earlier races the last BOOTs. A device sends BOOT at power-on
        only and gives it up after five attempts: one that booted before the gateway opened the
        bus (pyserial flushes what came before) is heard through its answer to STATUS_POLL."""
        procs.wait_until(self.boots_settled, 30, "every BOOT echoed or given up by its device")
        procs.wait_until(
            lambda: self.heard() >= set(ADDRS),
            120,  # sixteen devices over one bus, on a loaded machine
            "the gateway to journal every evaluator's BOOT or answer to STATUS_POLL",
        )
        echoed = self.sims.call(lambda: {e.addr for e in self.bus.echoed if e.cmd == CMD_BOOT})
        assert echoed <= self.booted(), "a BOOT echoed before it was journaled"

    def boots_settled(self) -> bool:
        return self.sims.call(
            lambda: all(
                e.echoed_at is not None or e.dropped for e in self.bus.events if e.cmd == CMD_BOOT
            )
        )

    def booted(self) -> set[int]:
        return {int(body["addr"]) for body in self.journaled("evaluator.boot")}

    def heard(self) -> set[int]:
        """Evaluators the gateway journaled a BOOT or an answered STATUS_POLL of."""
        polled = self.journaled("evaluator.health")
        return self.booted() | {int(body["addr"]) for body in polled if body["online"]}

    def journaled(self, kind: str) -> list[dict[str, Any]]:
        path = self.tmp / "edge-gw1" / "journal.db"
        if not path.exists():
            return []
        try:
            with sqlite3.connect(path) as db:
                docs = db.execute("SELECT doc FROM events WHERE kind = ?", (kind,)).fetchall()
        except sqlite3.OperationalError:  # created, schema not yet committed
            return []
        return [json.loads(doc)["body"] for (doc,) in docs]

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        self.central.stop()
        self.sims.run(self.qm.__aexit__(None, None, None))
        self.sims.run(self.bus.stop())

    def central_events(self, kind: str) -> list[dict[str, Any]]:
        head = journal_head(self.tmp)
        procs.wait_until(
            lambda: procs.committed_through(self.url, "gw1") >= head,
            60,
            "central to catch up with the journal",
        )
        # One query for kind and body: the gateway keeps journaling health events meanwhile.
        with sqlite3.connect(self.tmp / "central.db") as db:
            return [
                json.loads(body)
                for (body,) in db.execute(
                    "SELECT body FROM events WHERE gateway_id='gw1' AND kind=? ORDER BY seq",
                    (kind,),
                )
            ]


def assert_journal_replays_to_its_marks(tmp: Path) -> int:
    """The whole journal, fed through fresh invitation rules as a restart does, gives every
    device event the invitation and marks the gateway journaled live."""
    with sqlite3.connect(tmp / "edge-gw1" / "journal.db") as db:
        docs = [json.loads(doc) for (doc,) in db.execute("SELECT doc FROM events ORDER BY seq")]
    decisions = InvitationRules({0x81 + i: i + 1 for i in range(N_EVALUATORS)}).replay(docs)
    frames = [d for d in docs if d["kind"] in FRAME_KINDS]
    assert len(decisions) == len(frames)
    pairs = [
        (doc["body"], d)
        for doc, d in zip(frames, decisions, strict=True)
        if doc["kind"] != "evaluator.fault"
    ]
    live = [(body["addr"], body.get("invitation"), body["marks"]) for body, _ in pairs]
    replayed = [
        (d.addr, d.invitation.model_dump() if d.invitation else None, d.marks) for _, d in pairs
    ]
    assert replayed == live
    return len(live)


@pytest.fixture
def hall(tmp_path: Path, broker: Broker) -> Iterator[Hall]:
    with LoopThread() as sims:
        # collisions damage 8% of device frames and 8% of our echoes go unheard: retransmissions
        h = Hall(tmp_path, broker, sims, corrupt_rate=0.08, host_loss_rate=0.08)
        for i in range(N_EVALUATORS):
            sims.call(partial(h.bus.add, 0x81 + i, ignore_echoes=1 if i % 4 == 0 else 0))
        try:
            yield h
        finally:
            h.close()


def _wait_settled(hall: Hall, timeout: float = 30) -> None:
    """Until every simulated event is echoed or given up by its device."""
    procs.wait_until(
        lambda: hall.sims.call(
            lambda: all(e.echoed_at is not None or e.dropped for e in hall.bus.events)
        ),
        timeout,
        "every device event settled",
    )


def test_sixteen_evaluators_under_load_every_echoed_key_once(hall: Hall) -> None:
    hall.start_gateway()
    hall.wait_up()
    rng = random.Random(11)
    presses, started = 0, time.monotonic()
    while time.monotonic() - started < 8:  # aggregate ≈ 30 presses/s over 16 devices
        addr = 0x81 + rng.randrange(N_EVALUATORS)
        hall.sims.call(partial(hall.bus.press, addr, rng.randint(1, 6)))
        presses += 1
        if presses % 10 == 0:
            hall.sims.call(lambda: hall.bus.inject_caller_frame(0x05, 0x41, b"\x01\x02"))
        time.sleep(1 / 30)
    rate = presses / (time.monotonic() - started)
    _wait_settled(hall)
    echoed = hall.sims.call(lambda: [(e.addr, e.data) for e in hall.bus.echoed if e.cmd == CMD_KEY])
    retransmitted = hall.sims.call(
        lambda: sum(1 for e in hall.bus.events if e.cmd == CMD_KEY and e.attempts > 1)
    )
    keys = hall.central_events("evaluator.key")
    counted = Counter(
        (k["addr"], bytes.fromhex(k["raw"])[6:-2]) for k in keys if "RETRANSMIT" not in k["marks"]
    )
    assert rate >= 20 and len(echoed) >= 150 and retransmitted >= 20, (rate, retransmitted)
    missing = [e for e in echoed if counted[e] != 1]
    assert not missing, f"{len(missing)} echoed keys not in central exactly once"
    assert all(n == 1 for n in counted.values()), "a key counted twice"
    assert any("RETRANSMIT" in k["marks"] for k in keys)
    assert assert_journal_replays_to_its_marks(hall.tmp) >= len(keys)  # keys, boots heard
    heard = hall.sims.call(lambda: [f.addr for _, f in hall.bus.heard])
    assert not [a for a in heard if 0x01 <= a <= 0x7F], "the gateway answered a caller"
    # the gateway reports its counters in its periodic state message (every 2 s here)
    procs.wait_until(
        lambda: (
            procs.gateway_state(hall.url, "gw1")["health"]["bus"][0]["caller_frames"]
            >= presses // 10
        ),
        15,
        "the state message to count every caller frame",
    )


def test_service_finished_invites_and_key_is_tied_to_ticket(hall: Hall) -> None:
    hall.start_gateway()
    hall.wait_up()
    qm = hall.qm
    hall.sims.call(lambda: qm.login(3, "100233"))
    ticket = hall.sims.call(lambda: qm.issue_ticket("A01", "不动产登记")).ticket
    hall.sims.call(lambda: qm.call(ticket, 3))
    hall.sims.call(lambda: qm.start(ticket, 3, "100233"))
    hall.sims.call(lambda: qm.finish(ticket, 3, "100233"))
    procs.wait_until(
        lambda: hall.sims.call(lambda: bool(hall.bus.invitations.get(0x83))),
        10,
        "the invitation to reach window 3's evaluator",
    )
    invitation = hall.sims.call(lambda: hall.bus.invitations[0x83][-1])
    assert invitation.staff_no == "100233"
    hall.sims.call(lambda: hall.bus.press(0x83, 1))  # 非常满意, in the open session
    hall.sims.call(lambda: hall.bus.press(0x83, 3))  # a second key: no invitation open
    _wait_settled(hall)
    # collisions may delay the first press past the second, so find them by key
    keys = {
        k["key"]: k
        for k in hall.central_events("evaluator.key")
        if k["window"] == 3 and "RETRANSMIT" not in k["marks"]
    }
    assert keys[1]["invitation"]["ticket"] == ticket
    assert keys[1]["invitation"]["staff"] == "100233" and keys[1]["marks"] == []
    assert keys[3]["marks"] == ["NO_SESSION"] and keys[3]["invitation"] is None
    assert assert_journal_replays_to_its_marks(hall.tmp) >= 2  # the keys (and boots heard)
    events = hall.central_events("queue.event")
    assert [e["type"] for e in events][-4:] == ["TK", "CL", "ST", "FN"]
    assert events[-4]["service_name"] == "不动产登记" and events[-1]["machine_time"]


def test_the_next_start_closes_the_invitation_a_call_does_not(hall: Hall) -> None:
    hall.start_gateway()
    hall.wait_up()
    qm = hall.qm
    hall.sims.call(lambda: qm.login(4, "100244"))
    first = hall.sims.call(lambda: qm.issue_ticket("A01")).ticket
    for step in (qm.call, qm.start, qm.finish):
        hall.sims.call(partial(step, first, 4))
    procs.wait_until(
        lambda: hall.sims.call(lambda: bool(hall.bus.invitations.get(0x84))),
        10,
        "the invitation to reach window 4's evaluator",
    )
    invitation = hall.sims.call(lambda: hall.bus.invitations[0x84][-1])
    second = hall.sims.call(lambda: qm.issue_ticket("A01")).ticket
    hall.sims.call(lambda: qm.call(second, 4))  # staff call the next number at once
    procs.wait_until(lambda: hall.sims.call(lambda: not qm.pending), 10, "the CL acknowledged")
    assert hall.sims.call(lambda: invitation.closed_by) is None  # the citizen may still press
    hall.sims.call(lambda: qm.start(second, 4))
    procs.wait_until(
        lambda: hall.sims.call(lambda: invitation.closed_by == "cancel"),
        10,
        "the gateway to cancel the invitation when the next service starts",
    )
    hall.sims.call(lambda: hall.bus.press(0x84, 2))  # the next citizen, mid-service
    _wait_settled(hall)
    closed = hall.central_events("evaluator.invite_closed")
    assert [
        (c["window"], c["session"], c["reason"], c["ticket"], c["invitation"]["ticket"])
        for c in closed
    ] == [(4, invitation.session, "next_service_started", second, first)]
    keys = [
        (k["key"], k["marks"])
        for k in hall.central_events("evaluator.key")
        if k["window"] == 4 and "RETRANSMIT" not in k["marks"]
    ]
    assert keys == [(2, ["NO_SESSION"])]
    assert_journal_replays_to_its_marks(hall.tmp)


def test_a_resent_burst_finish_then_next_start_leaves_no_invitation_open(hall: Hall) -> None:
    """The queue line was out while a service finished and the next one started: the machine
    resends FN, CL, ST in one burst. The invitation for the finished service is closed by the
    start right behind it, in that order, so the next citizen's press is not taken for it."""
    hall.start_gateway()
    hall.wait_up()
    qm = hall.qm
    hall.sims.call(lambda: qm.login(5, "100255"))
    first = hall.sims.call(lambda: qm.issue_ticket("A01")).ticket
    second = hall.sims.call(lambda: qm.issue_ticket("A01")).ticket
    hall.sims.call(lambda: qm.call(first, 5))
    hall.sims.call(lambda: qm.start(first, 5))
    procs.wait_until(lambda: hall.sims.call(lambda: not qm.pending), 10, "the ST acknowledged")
    hall.sims.run(qm.unplug())
    hall.sims.call(lambda: qm.finish(first, 5))
    hall.sims.call(lambda: qm.call(second, 5))
    hall.sims.call(lambda: qm.start(second, 5))
    hall.sims.run(qm.replug())
    procs.wait_until(lambda: hall.sims.call(lambda: not qm.pending), 15, "the burst acknowledged")
    closed = hall.central_events("evaluator.invite_closed")
    assert [(c["window"], c["reason"], c["ticket"], c["invitation"]["ticket"]) for c in closed] == [
        (5, "next_service_started", second, first)
    ]
    procs.wait_until(
        lambda: hall.sims.call(lambda: hall.bus.devices[0x85].invitation is None),
        10,
        "no invitation open on window 5's evaluator",
    )
    hall.sims.call(lambda: hall.bus.press(0x85, 3))
    _wait_settled(hall)
    keys = [
        (k["key"], k["marks"])
        for k in hall.central_events("evaluator.key")
        if k["window"] == 5 and "RETRANSMIT" not in k["marks"]
    ]
    assert keys == [(3, ["NO_SESSION"])]
    assert_journal_replays_to_its_marks(hall.tmp)


def test_queue_duplicates_after_reconnects_never_duplicate_in_central(hall: Hall) -> None:
    hall.start_gateway()
    qm = hall.qm
    for round_no in range(3):
        for _ in range(20):
            t = hall.sims.call(lambda: qm.issue_ticket("B02")).ticket
            hall.sims.call(partial(qm.call, t, 2))
        hall.sims.run(qm.unplug())  # line pulled: unacked messages stay in its buffer
        time.sleep(0.5)
        hall.sims.run(qm.replug())  # …and are all sent again, plus the 2 s resends
        time.sleep(1.0 + round_no)
    procs.wait_until(
        lambda: hall.sims.call(lambda: not qm.pending), 30, "the machine's buffer to empty"
    )
    events = hall.central_events("queue.event")
    mseqs = [e["mseq"] for e in events]
    assert len(mseqs) == len(set(mseqs)) == 120
    assert hall.sims.call(lambda: len(qm.acked)) >= 120


def test_serial_line_pulled_and_restored_mid_stream(hall: Hall) -> None:
    hall.start_gateway()
    hall.wait_up()
    rng = random.Random(5)
    for step in range(60):
        hall.sims.call(lambda: hall.bus.press(0x81 + rng.randrange(N_EVALUATORS), 2))
        if step == 20:
            hall.sims.call(hall.bus.unplug)
        if step == 35:
            hall.sims.call(hall.bus.replug)
        time.sleep(0.05)
    _wait_settled(hall)
    echoed = hall.sims.call(lambda: [(e.addr, e.data) for e in hall.bus.echoed if e.cmd == CMD_KEY])
    counted = Counter(
        (k["addr"], bytes.fromhex(k["raw"])[6:-2])
        for k in hall.central_events("evaluator.key")
        if "RETRANSMIT" not in k["marks"]
    )
    assert len(echoed) >= 30
    assert all(counted[e] == 1 for e in echoed)


def test_kill9_between_key_and_echo_arrives_once(hall: Hall) -> None:
    hall.sims.call(lambda: setattr(hall.bus.devices[0x85], "ignore_echoes", 2))
    hall.start_gateway()
    hall.wait_up()
    event = hall.sims.call(lambda: hall.bus.press(0x85, 4))
    assert event is not None
    journal = hall.tmp / "edge-gw1" / "journal.db"
    procs.wait_until(lambda: _journaled_keys(journal) >= 1, 5, "the KEY journaled", interval=0.002)
    assert hall.gateway is not None
    hall.gateway.kill9()  # journaled; the echo is lost or ignored, the device will repeat
    hall.start_gateway("edge-2.log")
    _wait_settled(hall)
    keys = [k for k in hall.central_events("evaluator.key") if k["addr"] == 0x85]
    first = [k for k in keys if "RETRANSMIT" not in k["marks"]]
    assert len(first) == 1 and first[0]["key"] == 4
    assert_journal_replays_to_its_marks(hall.tmp)  # across the crash and the restart
    echoed = hall.sims.call(lambda: event.echoed_at is not None)
    print(
        f"device saw its echo after the restart: {echoed}; attempts "
        f"{hall.sims.call(lambda: event.attempts)}; journaled copies {len(keys)}"
    )


def _journaled_keys(path: Path) -> int:
    try:
        with sqlite3.connect(path) as db:
            return int(
                db.execute("SELECT count(*) FROM events WHERE kind='evaluator.key'").fetchone()[0]
            )
    except sqlite3.Error:
        return 0


def test_unconfigured_evaluator_is_journaled_not_lost(hall: Hall) -> None:
    hall.sims.call(lambda: hall.bus.add(0x9A))  # on the bus, missing from the gateway config
    hall.start_gateway()
    hall.wait_up()
    hall.sims.call(lambda: hall.bus.press(0x9A, 2))
    _wait_settled(hall)
    keys = [k for k in hall.central_events("evaluator.key") if k["addr"] == 0x9A]
    assert [(k["window"], k["key"]) for k in keys if "RETRANSMIT" not in k["marks"]] == [(0, 2)]
    health = [h for h in hall.central_events("evaluator.health") if h["addr"] == 0x9A]
    assert health and "unconfigured" in health[0]["reason"]


def test_evaluators_that_booted_before_the_gateway_are_heard_by_polling(hall: Hall) -> None:
    """Powered on before the gateway: every BOOT given up unheard (the device never sends it
    again), yet the gateway finds each evaluator by STATUS_POLL and takes its keys."""
    procs.wait_until(hall.boots_settled, 30, "every BOOT given up: no gateway listens yet")
    hall.start_gateway()
    hall.wait_up()
    assert not hall.booted()
    hall.sims.call(lambda: hall.bus.press(0x86, 2))
    _wait_settled(hall)
    keys = [
        (k["addr"], k["key"])
        for k in hall.central_events("evaluator.key")
        if "RETRANSMIT" not in k["marks"]
    ]
    assert keys == [(0x86, 2)]

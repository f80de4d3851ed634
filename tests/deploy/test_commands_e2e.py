"""Remote commands end to end, all real: the production TLS broker, the aggregator with its API,
a gateway provisioned from a bundle with the real CLI. Central queues and signs, the gateway
verifies, executes and answers, central records the answer.

Forged, replayed (also after the gateway restarts), expired and misaddressed commands are
refused with a result; valid ones are carried out (a replay really publishes the journal again
and central ends with the same rows, each once).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from central.api.app import create_app
from central.config import CentralConfig
from central.gateways.command_queue import count_results
from central.gateways.command_signing import CommandSigner, generate_signing_key, load_signing_key
from central.gateways.provision import provision
from central.security.tokens import Role, create_token
from central.spine.aggregator import Aggregator
from central.store.schema import events, gateways
from central.store.schema_ops import command_results, gateway_commands
from edge.app import Gateway
from edge.cli_config import load_config as load_edge_config
from edge.configstore import ConfigStore
from hallkit.clock import utc_now
from protocols.envelope import encode
from protocols.topics import Channel, topic
from tests.deploy.support import Peer, TlsBroker, wait_until

EDGE = str(Path(sys.executable).parent / "hallwatch-edge")
HALL, GW = "hallA", "gw-1"
WAIT = 20.0


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Site:
    tmp: Path
    broker: TlsBroker
    central: CentralConfig
    aggregator: Aggregator
    api: httpx.AsyncClient
    headers: dict[str, str]
    edge_config: Path
    gateway: Gateway
    attacker: Peer  # a second aggregator identity, to put arbitrary payloads on cmd

    async def restart_gateway(self) -> None:
        await self.gateway.stop()
        self.gateway = Gateway(load_edge_config(self.edge_config))
        await self.gateway.start()

    async def post(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        response = await self.api.post(
            f"/api/v1/gateways/{GW}/commands",
            headers=self.headers,
            json={"name": name, "args": args},
        )
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    async def listing(self) -> dict[str, Any]:
        response = await self.api.get(f"/api/v1/gateways/{GW}/commands", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def answered(self, command_id: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def done() -> bool:
            for command in (await self.listing())["commands"]:
                if command["id"] == command_id and command["results"]:
                    found.update(command)
                    return True
            return False

        await until(done, f"the gateway's answer to {command_id}")
        return found

    async def inject(self, payload: bytes, gateway: str = GW) -> dict[str, Any]:
        """Publish raw bytes on the gateway's cmd topic; return the answer central recorded."""
        engine = self.aggregator.engine
        before = await count_results(engine, GW)
        self.attacker.publish(topic(HALL, gateway, Channel.CMD), payload)

        async def answered() -> bool:
            return await count_results(engine, GW) > before

        await until(answered, "the gateway's answer to an injected payload")
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(command_results).order_by(command_results.c.id.desc()).limit(1)
                )
            ).one()
        return dict(row._mapping)

    async def stored(self) -> tuple[int, int, int]:
        """(rows, distinct seqs, committed_through) central holds for the gateway."""
        async with self.aggregator.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(func.count(), func.count(func.distinct(events.c.seq))).where(
                        events.c.gateway_id == GW
                    )
                )
            ).one()
            committed = (
                await conn.execute(
                    select(gateways.c.committed_through).where(gateways.c.gateway_id == GW)
                )
            ).scalar_one()
        return int(rows[0]), int(rows[1]), int(committed)


def _central_config(tmp: Path, broker: TlsBroker) -> CentralConfig:
    pid_file = tmp / "broker.pid"
    assert broker.process is not None
    pid_file.write_text(f"{broker.process.pid}\n")
    return CentralConfig.model_validate(
        {
            "database_url": f"sqlite+aiosqlite:///{tmp / 'central.db'}",
            "data_dir": str(tmp / "central"),
            "broker": {
                "host": "127.0.0.1",
                "port": broker.port,
                "instance": "c1",
                **broker.central_tls(),
            },
            "http": {"enabled": False},
            "provisioning": {
                "pki_dir": str(broker.store.directory),
                "broker_dir": str(broker.root),
                "broker_url": f"mqtts://127.0.0.1:{broker.port}",
                "broker_pid_file": str(pid_file),
                "central_users": ["central.main", "central.main-cases", "central.agg2"],
            },
        }
    )


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    broker = TlsBroker.create(tmp_path / "broker")
    broker.start()
    aggregator: Aggregator | None = None
    gateway: Gateway | None = None
    attacker: Peer | None = None
    try:
        central = _central_config(tmp_path, broker)
        aggregator = Aggregator(central)
        await aggregator.start()
        reloads = broker.log.count("Reloading config.")
        done = await provision(aggregator.engine, central, HALL, GW, tmp_path / "gw.tar.gz")
        assert done.seq_floor == 0
        wait_until(lambda: broker.log.count("Reloading config.") > reloads, what="reload")
        await asyncio.sleep(0.3)  # the broker logs the reload before it applies it

        target = tmp_path / "gw-etc"
        applied = subprocess.run(  # noqa: ASYNC221
            [
                EDGE,
                "provision",
                "apply",
                str(done.bundle),
                "--target",
                str(target),
                "--data-dir",
                str(tmp_path / "gw-data"),
            ],
            capture_output=True,
            text=True,
        )
        assert applied.returncode == 0, applied.stderr
        edge_config = target / "edge.yaml"
        data = yaml.safe_load(edge_config.read_text())
        data.update(
            clock={"assume_synced": True},
            uplink={"ack_timeout_s": 3, "state_interval_s": 2},
            generator={"enabled": True, "rate": 0, "total": 40, "chunk": 40},
        )
        edge_config.write_text(yaml.safe_dump(data))
        gateway = Gateway(load_edge_config(edge_config))
        await gateway.start()

        attacker = Peer(broker.port, broker.identity("agg2", broker.store.issue_central("agg2")))
        assert attacker.connect()
        token = await create_token(aggregator.engine, Role.TECHNICIAN, label="tester")
        transport = httpx.ASGITransport(app=create_app(aggregator.engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://central") as api:
            made = Site(
                tmp_path,
                broker,
                central,
                aggregator,
                api,
                {"Authorization": f"Bearer {token}"},
                edge_config,
                gateway,
                attacker,
            )
            yield made
            gateway = made.gateway
    finally:
        if attacker is not None:
            attacker.close()
        if gateway is not None:
            await gateway.stop()
        if aggregator is not None:
            await aggregator.stop()
        broker.stop()


async def _caught_up(site: Site) -> int:
    """The generator's 40 events and the boot event, all stored at central."""

    async def done() -> bool:
        head = site.gateway.journal.head_seq
        return head >= 41 and (await site.stored())[2] >= head

    await until(done, "central to hold the whole journal")
    return site.gateway.journal.head_seq


async def test_valid_commands_are_carried_out_and_answered(site: Site) -> None:
    head = await _caught_up(site)
    assert await site.stored() == (head, head, head)

    # replay_from: the uplink publishes everything again, central stores nothing twice
    batches = site.gateway.uplink.published_batches
    duplicates = site.aggregator.ingestor.stats.duplicates
    queued = await site.post("replay_from", {"seq": 1})
    assert (queued["status"], queued["version"]) == ("queued", 1)
    answer = await site.answered(queued["id"])
    assert answer["status"] == "accepted", answer
    assert answer["results"][0]["detail"].startswith("replaying 1–")

    async def republished() -> bool:
        return site.aggregator.ingestor.stats.duplicates >= duplicates + head

    await until(republished, "central to receive the whole journal again")
    assert site.gateway.uplink.published_batches > batches
    assert await site.stored() == (head, head, head)

    # reread_devices: nothing configured here, and an unknown device id is refused
    answer = await site.answered((await site.post("reread_devices", {}))["id"])
    assert answer["status"] == "accepted"
    answer = await site.answered(
        (await site.post("reread_devices", {"devices": ["evaluator-9"]}))["id"]
    )
    assert (answer["status"], answer["results"][0]["reason"]) == ("refused", "malformed")
    assert "unknown device ids" in answer["results"][0]["detail"]

    # apply_config: a valid version is written beside the provisioned file and takes effect;
    # one that tries to move the gateway to another hall is refused
    config = {**yaml.safe_load(site.edge_config.read_text()), "staff_names": {"100001": "张三"}}
    answer = await site.answered(
        (await site.post("apply_config", {"config_version": 7, "config": config}))["id"]
    )
    assert answer["status"] == "accepted", answer
    assert "devices restarted" in answer["results"][0]["detail"]
    assert site.gateway.config.staff_names == {"100001": "张三"}
    data_dir = site.gateway.config.data_dir
    assert ConfigStore(data_dir).active() == (7, data_dir / "config" / "edge-v7.yaml")
    moved = {**config, "hall": "hallB"}
    answer = await site.answered(
        (await site.post("apply_config", {"config_version": 8, "config": moved}))["id"]
    )
    assert answer["status"] == "refused"
    assert "provisioning" in answer["results"][0]["detail"]
    assert ConfigStore(data_dir).active() == (7, data_dir / "config" / "edge-v7.yaml")
    assert not site.gateway.restart_requested
    # a change the running process cannot take in place: answered, then a restart
    slower = {**config, "uplink": {**config["uplink"], "state_interval_s": 5}}
    answer = await site.answered(
        (await site.post("apply_config", {"config_version": 9, "config": slower}))["id"]
    )
    assert "restarting the service" in answer["results"][0]["detail"]
    assert site.gateway.restart_requested
    restarted = load_edge_config(site.edge_config)
    assert restarted.uplink.state_interval_s == 2  # the provisioned file is untouched …
    active = ConfigStore(data_dir).load_active(restarted)
    assert active is not None and active.version == 9  # … and v9 is what `run` will load
    assert active.config.uplink.state_interval_s == 5

    listing = (await site.listing())["commands"]
    assert [c["version"] for c in listing] == [6, 5, 4, 3, 2, 1]
    # each carried out once: a second delivery (the broker connection dropped before the
    # PUBACK reached central, which then publishes again) is refused as a replay
    assert all(r["reason"] == "replayed" for c in listing for r in c["results"][1:])


async def test_forged_replayed_expired_and_misaddressed_commands_are_refused(
    site: Site,
) -> None:
    await _caught_up(site)
    accepted = await site.answered((await site.post("replay_from", {"seq": 1}))["id"])
    assert accepted["status"] == "accepted"

    # the exact bytes central sent (Ed25519 signatures are deterministic) — captured and
    # played back by an attacker
    signer = CommandSigner(load_signing_key(site.central.command_key_path))
    async with site.aggregator.engine.connect() as conn:
        row = (
            await conn.execute(
                select(gateway_commands).where(gateway_commands.c.id == accepted["id"])
            )
        ).one()
    from protocols.commands import Command

    sent = signer.sign(
        Command(
            id=row.id,
            hall=row.hall_id,
            gateway=row.gateway_id,
            version=row.version,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            name=row.name,
            args=row.args,
        )
    )
    replayed = await site.inject(encode(sent))
    assert (replayed["accepted"], replayed["reason"]) == (False, "replayed")

    # … also after the gateway restarts: the version it accepted is on its disk
    await site.restart_gateway()
    await until(lambda: _true(site.gateway.uplink.connected), "the gateway to reconnect")
    replayed = await site.inject(encode(sent))
    assert replayed["reason"] == "replayed"

    forger = CommandSigner(generate_signing_key())
    forged = forger.issue(HALL, GW, "replay_from", {"seq": 1}, version=1000)
    assert (await site.inject(encode(forged)))["reason"] == "bad_signature"
    tampered = sent.model_copy(update={"version": 1001, "args": {"seq": 2}})
    assert (await site.inject(encode(tampered)))["reason"] == "bad_signature"

    expired = signer.issue(
        HALL,
        GW,
        "replay_from",
        {"seq": 1},
        version=1002,
        ttl=timedelta(hours=1),
        now=utc_now() - timedelta(hours=2),
    )
    assert (await site.inject(encode(expired)))["reason"] == "expired"

    elsewhere = signer.issue(HALL, "gw-2", "replay_from", {"seq": 1}, version=1003)
    assert (await site.inject(encode(elsewhere)))["reason"] == "wrong_target"
    assert (await site.inject(b"\x00 not a command"))["reason"] == "malformed"

    # none of that moved the gateway's replay memory: the next real command is accepted
    answer = await site.answered((await site.post("reread_devices", {}))["id"])
    assert answer["status"] == "accepted"
    assert answer["version"] == 2

    # the API shows answers under the command whose id the payload carried (the replays and
    # the tampered copy), the others apart
    listing = await site.listing()
    first = next(c for c in listing["commands"] if c["version"] == 1)
    reasons = [r["reason"] for r in first["results"]]
    assert reasons[0] == "accepted" and reasons.count("bad_signature") == 1, reasons
    assert reasons.count("replayed") >= 2 and set(reasons[1:]) == {"replayed", "bad_signature"}
    assert first["status"] == "accepted"
    assert sorted(r["reason"] for r in listing["unmatched_results"]) == [
        "bad_signature",
        "expired",
        "malformed",
        "wrong_target",
    ]


async def _true(value: bool) -> bool:
    return value


def test_a_replacement_gateway_continues_the_numbering(tmp_path: Path) -> None:
    """Provisioning the same gateway id again: new certificate, the old one revoked, and the
    bundle's seq_floor above everything central holds, so no number is used twice."""
    asyncio.run(_replacement(tmp_path))


async def _replacement(tmp_path: Path) -> None:
    from central.security.ca_store import PkiStore
    from central.store.db import make_engine
    from central.store.migrate import upgrade
    from edge.provisioning import read_bundle
    from tests.central.spine.test_ingest import message

    central = CentralConfig.model_validate(
        {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'central.db'}",
            "data_dir": str(tmp_path / "central"),
            "provisioning": {"broker_url": "mqtts://broker.example.cn:8883"},
        }
    )
    engine = make_engine(central.database_url)
    await upgrade(engine)
    try:
        first = await provision(engine, central, "H1", "gw1", tmp_path / "first.tar.gz")
        from central.spine.ingest import Ingestor

        ingestor = Ingestor(engine)
        await ingestor.ingest([message(range(1, 101))])
        await ingestor.ingest([message(range(110, 121))])  # beyond a gap: stored, pending
        second = await provision(engine, central, "H1", "gw1", tmp_path / "second.tar.gz")
        assert (first.seq_floor, second.seq_floor) == (0, 120)
        assert second.revoked_serials == [first.serial]
        store = PkiStore.open(central.pki_dir)
        assert store.is_revoked(int(first.serial, 16))
        assert second.policy.allowed == ("gw.H1.gw1",)
        manifest = read_bundle(second.bundle)["manifest.json"]
        assert b'"seq_floor": 120' in manifest
        with pytest.raises(ValueError, match="belongs to hall H1"):
            await provision(engine, central, "H2", "gw1", tmp_path / "third.tar.gz")
    finally:
        await engine.dispose()

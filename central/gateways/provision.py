"""Provisioning, revoking and listing gateways: the registry, the CA and the broker together.

``provision`` issues a new identity from central's CA (superseding and revoking any earlier
certificate of that gateway), registers the gateway, and writes a bundle whose configuration
carries two floors: ``journal.seq_floor`` (the highest sequence central holds for that gateway
id, so a replacement for a dead gateway continues the numbering and central's data stays
continuous) and ``commands.version_floor`` (the last command version issued, so commands
captured for the dead box are refused by the new one). Then the broker is brought in line.
"""

from __future__ import annotations

import ipaddress
import os
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.config import CentralConfig
from central.gateways import command_queue
from central.gateways.bundle import write_bundle
from central.gateways.command_signing import load_or_create_signing_key
from central.security.broker_acl import BrokerPolicy, GatewayAccess, sync_broker
from central.security.ca import Role, parse_username
from central.security.ca_store import PkiStore
from central.spine.registry import register, revoke
from central.spine.sequences import high_water
from central.store.schema import gateways
from protocols.provisioning import gateway_username, parse_broker_url


@dataclass(frozen=True, slots=True)
class Provisioned:
    hall: str
    gateway: str
    bundle: Path
    serial: str
    seq_floor: int
    version_floor: int
    revoked_serials: list[str]
    policy: BrokerPolicy


async def seq_floor(engine: AsyncEngine, gateway: str) -> int:
    """Everything central holds for this gateway id lies at or below this sequence number.

    Beyond ``committed_through`` there may be stored events past a gap (``pending_ranges``):
    a replacement must not reuse those numbers either, or its new events would be taken for
    duplicates. The gap itself, if the dead box never fills it, is then reported lost by the
    replacement's first batch.
    """
    async with engine.connect() as conn:
        return await high_water(conn, gateway)


async def registry_view(engine: AsyncEngine) -> list[GatewayAccess]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(gateways.c.hall_id, gateways.c.gateway_id, gateways.c.revoked_at)
            )
        ).all()
    return [GatewayAccess(r.hall_id, r.gateway_id, r.revoked_at is not None) for r in rows]


def _reload(config: CentralConfig) -> None:
    """SIGHUP the broker named in the configuration; otherwise the systemd path unit does."""
    pid_file = config.provisioning.broker_pid_file
    if pid_file is None:
        return
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGHUP)


async def sync(
    engine: AsyncEngine, config: CentralConfig, store: PkiStore | None = None
) -> BrokerPolicy:
    """CRL + ACL from the CA ledger and the registry, then a broker reload."""
    store = store or PkiStore.open_or_create(config.pki_dir)
    directory = config.broker_dir
    directory.mkdir(parents=True, exist_ok=True)
    return sync_broker(
        store,
        directory / "acl",
        directory / "crl.pem",
        central_users=config.provisioning.central_users,
        registry=await registry_view(engine),
        reload=lambda: _reload(config),
    )


LOOPBACK_HOSTS = ("localhost", "ip6-localhost", "ip6-loopback")


def is_loopback(host: str) -> bool:
    """A host name that only reaches the machine it is read on."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in LOOPBACK_HOSTS or host.lower().endswith(".localhost")


def bundle_broker_url(config: CentralConfig, given: str | None) -> str:
    """The broker address for a gateway's bundle: the one given, else central's configured
    ``provisioning.broker_url`` if it names a host a gateway can reach (a bundle pointing a
    hall's gateway at its own loopback would never connect)."""
    if given:
        parse_broker_url(given)
        return given
    configured = config.provisioning.broker_url
    if configured is None:
        raise ValueError(
            "未指定代理地址 / no broker address: pass --broker mqtts://<host>:8883, or set "
            "provisioning.broker_url in central's config to the address gateways connect to"
        )
    _, host, _ = parse_broker_url(configured)
    if is_loopback(host):
        raise ValueError(
            f"配置中的代理地址只指向本机 / central's provisioning.broker_url {configured} is a "
            "loopback address a gateway cannot reach: pass --broker mqtts://<host>:8883, or set "
            "provisioning.broker_url to the broker's public address"
        )
    return configured


async def provision(
    engine: AsyncEngine,
    config: CentralConfig,
    hall: str,
    gateway: str,
    out: Path,
    broker_url: str | None = None,
) -> Provisioned:
    url = broker_url or config.provisioning.broker_url
    if url is None:
        raise ValueError("no broker address: pass one or set provisioning.broker_url")
    parse_broker_url(url)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(gateways.c.hall_id, gateways.c.revoked_at).where(
                    gateways.c.gateway_id == gateway
                )
            )
        ).first()
    if row is not None and row.hall_id != hall:
        raise ValueError(
            f"gateway id {gateway} belongs to hall {row.hall_id}; gateway ids "
            "are unique across halls"
        )
    if row is not None and row.revoked_at is not None:
        raise ValueError(f"gateway {gateway} was revoked; provision a new gateway id")
    await register(engine, hall, gateway)
    store = PkiStore.open_or_create(config.pki_dir)
    before = {
        c.serial
        for c in store.issued()
        if c.revoked_at is None and c.common_name == gateway_username(hall, gateway)
    }
    identity = store.issue_gateway(hall, gateway)  # supersedes: the old box stops working
    floor = await seq_floor(engine, gateway)
    version_floor = await command_queue.last_version(engine, gateway)
    key = load_or_create_signing_key(config.command_key_path)
    bundle = write_bundle(
        out,
        identity,
        url,
        store.ca.cert,
        key,
        {
            "journal": {"seq_floor": floor},
            "commands": {"version_floor": version_floor},
            "uplink": {"live_channel": live_channel(config)},
        },
    )
    policy = await sync(engine, config, store)
    return Provisioned(
        hall,
        gateway,
        bundle,
        f"{identity.serial:x}",
        floor,
        version_floor,
        [f"{s:x}" for s in sorted(before)],
        policy,
    )


def live_channel(config: CentralConfig) -> bool:
    """Whether new gateways publish fresh events on their live channel: as configured, else on
    the province cluster (its gateway permissions and the ACL rendered here allow it)."""
    chosen = config.provisioning.live_channel
    return config.broker.kind == "rabbitmq" if chosen is None else chosen


async def revoke_gateway(
    engine: AsyncEngine, config: CentralConfig, gateway: str
) -> tuple[str, list[str], BrokerPolicy]:
    """Registry, certificates and broker: the gateway is silenced at once."""
    async with engine.connect() as conn:
        hall = (
            await conn.execute(select(gateways.c.hall_id).where(gateways.c.gateway_id == gateway))
        ).scalar()
    if hall is None:
        raise ValueError(f"unknown gateway {gateway!r}")
    await revoke(engine, gateway)
    store = PkiStore.open_or_create(config.pki_dir)
    serials = store.revoke_gateway(hall, gateway)
    policy = await sync(engine, config, store)
    return hall, [f"{s:x}" for s in serials], policy


@dataclass(frozen=True, slots=True)
class GatewayRow:
    hall: str
    gateway: str
    registered_at: datetime
    revoked_at: datetime | None
    committed_through: int
    online: bool
    cert_serial: str | None
    cert_not_after: datetime | None
    journal_head: int | None = None  # the gateway's own head seq, from its last state message
    oldest_unacked_utc: str | None = None  # its oldest event central has not acknowledged

    @property
    def behind(self) -> int | None:
        """Events journaled at the gateway and not yet committed here (as of its last state):
        a draining backlog shrinks from one state message to the next."""
        if self.journal_head is None:
            return None
        return max(0, self.journal_head - self.committed_through)


async def list_gateways(engine: AsyncEngine, config: CentralConfig) -> list[GatewayRow]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(gateways).order_by(gateways.c.hall_id, gateways.c.gateway_id))
        ).all()
    certificates: dict[str, tuple[str, datetime]] = {}
    if (config.pki_dir / PkiStore.CA_KEY).exists():
        for cert in PkiStore.open(config.pki_dir).issued():
            if cert.role is Role.GATEWAY and cert.revoked_at is None:
                parse_username(cert.common_name)
                certificates[cert.common_name] = (f"{cert.serial:x}", cert.not_after)
    out = []
    for r in rows:
        serial_and_expiry = certificates.get(gateway_username(r.hall_id, r.gateway_id))
        journal = (r.state or {}).get("journal") or {}
        out.append(
            GatewayRow(
                r.hall_id,
                r.gateway_id,
                r.registered_at,
                r.revoked_at,
                r.committed_through,
                r.online,
                serial_and_expiry[0] if serial_and_expiry else None,
                serial_and_expiry[1] if serial_and_expiry else None,
                journal.get("head_seq"),
                journal.get("oldest_unacked_utc"),
            )
        )
    return out

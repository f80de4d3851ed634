"""hallwatch-central backup / restore on SQLite (online backup API) and PostgreSQL (pg_dump -Fc,
pg_restore), through the real command line: the database, the CA and the command key come
back; a database that holds data is not overwritten without --force."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from central.gateways.command_signing import load_or_create_signing_key, public_key_pem
from central.security.ca_store import PkiStore
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import events
from tests.central.spine.test_ingest import message
from tests.support.databases import create_pg_database, drop_pg_database


@pytest.fixture
def database_at_head() -> bool:
    return True  # the backed-up database is migrated first: start from the template


CENTRAL = str(Path(sys.executable).parent / "hallwatch-central")


def write_config(path: Path, url: str, data_dir: Path) -> Path:
    path.write_text(yaml.safe_dump({"database_url": url, "data_dir": str(data_dir)}))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CENTRAL, *args], capture_output=True, text=True, timeout=300)


async def _fill(url: str, seqs: range) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    await register(engine, "H1", "gw1")
    await Ingestor(engine).ingest([message(seqs)])
    await engine.dispose()


async def _count(url: str) -> int:
    engine = make_engine(url)
    async with engine.connect() as conn:
        value = (await conn.execute(select(func.count()).select_from(events))).scalar()
    await engine.dispose()
    return int(value or 0)


@pytest.fixture
def empty_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty database of the same kind (where a restore goes on a new machine)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
        return
    name, url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


def test_backup_and_restore(database_url: str, empty_url: str, tmp_path: Path) -> None:
    asyncio.run(_fill(database_url, range(1, 51)))
    data = tmp_path / "central"
    store = PkiStore.create(data / "pki")
    store.issue_gateway("H1", "gw1")
    key = load_or_create_signing_key(data / "command-signing.key")
    conf = write_config(tmp_path / "central.yaml", database_url, data)

    out = tmp_path / "backups" / "central.tar"
    out.parent.mkdir()
    made = cli("backup", str(out), "-c", str(conf))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds the CA key

    # later events, then the restore over them: refused without --force …
    asyncio.run(_fill(database_url, range(51, 81)))
    assert asyncio.run(_count(database_url)) == 80
    refused = cli("restore", str(out), "-c", str(conf))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert asyncio.run(_count(database_url)) == 80
    # … and with it, the database is as it was at the backup
    forced = cli("restore", str(out), "--force", "-c", str(conf))
    assert forced.returncode == 0, forced.stderr
    assert asyncio.run(_count(database_url)) == 50

    # a new machine: empty database, no CA, no key
    fresh = tmp_path / "fresh"
    conf2 = write_config(tmp_path / "fresh.yaml", empty_url, fresh)
    restored = cli("restore", str(out), "-c", str(conf2))
    assert restored.returncode == 0, restored.stderr
    assert asyncio.run(_count(empty_url)) == 50
    assert PkiStore.open(fresh / "pki").ca.cert_pem() == store.ca.cert_pem()
    assert [c.serial for c in PkiStore.open(fresh / "pki").issued()] == [
        c.serial for c in store.issued()
    ]
    assert public_key_pem(
        load_or_create_signing_key(fresh / "command-signing.key")
    ) == public_key_pem(key)
    assert stat.S_IMODE((fresh / "pki" / "ca.key").stat().st_mode) == 0o600
    migrated = cli("migrate", "-c", str(conf2))
    assert migrated.returncode == 0, migrated.stderr


def test_a_damaged_or_foreign_backup_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    asyncio.run(_fill(url, range(1, 11)))
    conf = write_config(tmp_path / "central.yaml", url, tmp_path / "central")
    out = tmp_path / "central.tar"
    assert cli("backup", str(out), "-c", str(conf)).returncode == 0
    with tarfile.open(out) as tar:
        member = tar.getmember("database.sqlite")
    damaged = bytearray(out.read_bytes())
    damaged[member.offset_data + member.size // 2] ^= 0xFF  # one bit of the database copy
    (tmp_path / "damaged.tar").write_bytes(bytes(damaged))
    other = write_config(
        tmp_path / "other.yaml", f"sqlite+aiosqlite:///{tmp_path / 'other.db'}", tmp_path / "other"
    )
    result = cli("restore", str(tmp_path / "damaged.tar"), "-c", str(other))
    assert result.returncode == 1 and "damaged" in result.stderr
    assert (
        not (tmp_path / "other.db").exists()
        or asyncio.run(_count(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")) == 0
    )
    pg = write_config(
        tmp_path / "pg.yaml", "postgresql+asyncpg://nobody@127.0.0.1:1/none", tmp_path / "pg"
    )
    result = cli("restore", str(out), "-c", str(pg))
    assert result.returncode == 1 and "sqlite" in result.stderr

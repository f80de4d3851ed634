"""Backing up and restoring central: the database, the CA, the command key and the salt.

A backup is one tar file (0600: it holds the CA's private key)::

    manifest.json            format, database kind, schema revision, SHA-256 of every member
    database.sqlite          SQLite: a consistent copy taken with the online backup API
    database.pgdump          PostgreSQL: ``pg_dump -Fc``
    pki/…                    the CA directory (ca.key, ledger, CRL, issued certificates)
    command-signing.key      the Ed25519 key gateways trust for commands
    applicant.salt           the salt of the applicants' digests (cases)

Restoring refuses to write over a database that already holds tables unless ``force``; the
CA and the key are put back only where none exist (or with ``force``). After a restore the
gateways hold events central has lost: send each a ``replay_from`` (deploy/README.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from central.cases.masking import SALT_FILE
from central.config import CentralConfig
from central.store import partitions, schema_rollups
from hallkit.atomicfile import write_atomic
from hallkit.clock import utc_now

FORMAT = "hallwatch-central-backup/1"
SQLITE_MEMBER = "database.sqlite"
PG_MEMBER = "database.pgdump"
KEY_MEMBER = "command-signing.key"
PKI_PREFIX = "pki/"
MANIFEST = "manifest.json"


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: Path
    database: str
    members: dict[str, str]
    revision: str | None


# -- database URLs ---------------------------------------------------------------------------


def database_kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq command-line arguments and environment for the configured database.

    The password goes through PGPASSWORD, never the command line (visible in ``ps``).
    """
    parsed = make_url(url)
    args = ["--dbname", parsed.database or "postgres"]
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    return args, env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    try:
        result = subprocess.run(argv, capture_output=True, env={**os.environ, **env}, check=False)
    except FileNotFoundError:
        raise BackupError(f"{argv[0]} not found (apt-get install postgresql-client)") from None
    if result.returncode != 0:
        raise BackupError(f"{argv[0]} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result


# -- backup ----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dump_database(url: str, into: Path) -> str:
    if database_kind(url) == "sqlite":
        source = sqlite_path(url)
        if not source.exists():
            raise BackupError(f"{source} does not exist")
        target = into / SQLITE_MEMBER
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # consistent while the aggregator keeps writing
        finally:
            dst.close()
            src.close()
        return SQLITE_MEMBER
    args, env = pg_args(url)
    _run(["pg_dump", "-Fc", "--no-owner", "--file", str(into / PG_MEMBER), *args], env)
    return PG_MEMBER


def _revision(url: str) -> str | None:
    import asyncio

    from central.store.db import make_engine
    from central.store.migrate import current_revision

    async def go() -> str | None:
        engine = make_engine(url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except Exception:
        return None


def backup(config: CentralConfig, out: Path) -> BackupInfo:
    with tempfile.TemporaryDirectory(prefix=".hallwatch-backup-", dir=out.parent) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        members: dict[str, Path] = {}
        name = _dump_database(config.database_url, work)
        members[name] = work / name
        if config.pki_dir.is_dir():
            for path in sorted(config.pki_dir.rglob("*")):
                if path.is_file() and path.name != ".lock":
                    members[PKI_PREFIX + str(path.relative_to(config.pki_dir))] = path
        if config.command_key_path.is_file():
            members[KEY_MEMBER] = config.command_key_path
        salt = config.data_dir / SALT_FILE
        if salt.is_file():  # without it new applicant digests stop matching the stored ones
            members[SALT_FILE] = salt
        digests = {member: _sha256(path) for member, path in members.items()}
        revision = _revision(config.database_url)
        manifest = {
            "format": FORMAT,
            "created_utc": utc_now().isoformat(),
            "database": database_kind(config.database_url),
            "revision": revision,
            "members": digests,
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
            for member, path in members.items():
                info = tar.gettarinfo(str(path), arcname=member)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        write_atomic(out, buffer.getvalue(), 0o600)
    return BackupInfo(out, manifest["database"], digests, revision)  # type: ignore[arg-type]


# -- restore ---------------------------------------------------------------------------------


def read_backup(path: Path, into: Path) -> dict[str, Any]:
    """Unpack and verify; returns the manifest. Only plain files under known names."""
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{path} is not a readable backup: {exc}") from None
    with tar:
        names = tar.getnames()
        if MANIFEST not in names:
            raise BackupError(f"{path} has no {MANIFEST}")
        handle = tar.extractfile(MANIFEST)
        assert handle is not None
        manifest: dict[str, Any] = json.loads(handle.read())
        if manifest.get("format") != FORMAT:
            raise BackupError(f"{path} is not a {FORMAT} backup")
        for member in tar.getmembers():
            if member.name == MANIFEST:
                continue
            if member.name not in manifest["members"] or not member.isreg():
                raise BackupError(f"unexpected member {member.name!r} in backup")
            target = (into / member.name).resolve()
            if into.resolve() not in target.parents:
                raise BackupError(f"member {member.name!r} escapes the backup")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            os.chmod(target, 0o600)
    for member, digest in manifest["members"].items():
        if not (into / member).is_file() or _sha256(into / member) != digest:
            raise BackupError(f"{member} is missing or damaged in the backup")
    return manifest


def _sqlite_is_empty(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return True
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count = db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    finally:
        db.close()
    return int(count) == 0


def _pg_is_empty(url: str) -> bool:
    args, env = pg_args(url)
    result = _run(
        [
            "psql",
            "-XAtq",
            *args,
            "-c",
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema')",
        ],
        env,
    )
    return int(result.stdout.decode().strip() or "0") == 0


# --force: what is there goes first (the public tables and the schemas that hold the event
# months and the rollups' groupings), in the restore's transaction. Not pg_restore --clean: it
# drops each month partition's inherited constraints one by one, which PostgreSQL refuses.
PG_CLEAR = f"""
DROP SCHEMA IF EXISTS {partitions.SCHEMA} CASCADE;
DROP SCHEMA IF EXISTS {schema_rollups.SCHEMA} CASCADE;
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
    EXECUTE format('DROP TABLE IF EXISTS public.%I CASCADE', t.tablename);
  END LOOP;
END $$;
"""


def _pg_restore(url: str, work: Path, force: bool) -> None:
    """The dump as SQL, run by psql in one transaction (after PG_CLEAR with ``force``)."""
    args, env = pg_args(url)
    script = work / "restore.sql"
    _run(["pg_restore", "--no-owner", "--file", str(script), str(work / PG_MEMBER)], env)
    clear = work / "clear.sql"
    clear.write_text(PG_CLEAR if force else "", encoding="utf-8")
    _run(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            *args,
            "--file",
            str(clear),
            "--file",
            str(script),
        ],
        env,
    )


def restore(config: CentralConfig, source: Path, *, force: bool = False) -> dict[str, Any]:
    url = config.database_url
    kind = database_kind(url)
    with tempfile.TemporaryDirectory(prefix=".hallwatch-restore-") as tmp:
        work = Path(tmp)
        manifest = read_backup(source, work)
        if manifest["database"] != kind:
            raise BackupError(
                f"the backup holds a {manifest['database']} database; the configured one is {kind}"
            )
        if kind == "sqlite":
            target = sqlite_path(url)
            if not _sqlite_is_empty(target) and not force:
                raise BackupError(f"{target} already holds data; refusing without --force")
            target.parent.mkdir(parents=True, exist_ok=True)
            src = sqlite3.connect(work / SQLITE_MEMBER)
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)  # replaces every page of the target, in one step
            finally:
                dst.close()
                src.close()
        else:
            if not _pg_is_empty(url) and not force:
                raise BackupError("the database already holds tables; refusing without --force")
            _pg_restore(url, work, force)
        _restore_files(config, work, force)
    return manifest


def _restore_files(config: CentralConfig, work: Path, force: bool) -> None:
    pki = work / PKI_PREFIX.rstrip("/")
    if pki.is_dir() and (force or not (config.pki_dir / "ca.key").exists()):
        for path in sorted(pki.rglob("*")):
            if path.is_file():
                target = config.pki_dir / path.relative_to(pki)
                write_atomic(
                    target,
                    path.read_bytes(),
                    0o600 if path.name.endswith(".key") or path.name == "issued.json" else 0o644,
                )
        os.chmod(config.pki_dir, 0o700)
    key = work / KEY_MEMBER
    if key.is_file() and (force or not config.command_key_path.exists()):
        write_atomic(config.command_key_path, key.read_bytes(), 0o600)
    salt = work / SALT_FILE
    if salt.is_file() and (force or not (config.data_dir / SALT_FILE).exists()):
        write_atomic(config.data_dir / SALT_FILE, salt.read_bytes(), 0o600)

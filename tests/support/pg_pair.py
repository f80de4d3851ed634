"""A private PostgreSQL primary and its streaming replica, on private ports, stopped by PID.

Debian's server binaries (``/usr/lib/postgresql/<version>/bin``) run directly, not through
``pg_ctlcluster``: nothing of the system's clusters is touched. ``initdb`` and the server refuse
to run as root, so as root every server command runs as the ``postgres`` user (``runuser``) on a
directory that user owns; as anyone else they run as that user.

The replica is synchronous (``synchronous_standby_names = '*'`` on the primary, set once the
copy is taken so that the replica's data directory does not inherit it): a commit
returns only once the replica has flushed it, so an event acknowledged to a gateway is on the
replica when the primary dies. That is the setting a province needs (docs/province.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.broker import free_port, wait_port


def pg_bin() -> Path | None:
    """The newest installed server's bin directory, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass
class Server:
    bin: Path
    data: Path
    port: int
    log: Path
    options: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        settings = [
            f"port={self.port}",
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={self.data.parent}",
            "max_connections=60",
            "shared_buffers=32MB",
            "fsync=off",  # the tests kill processes, never the machine
            "full_page_writes=off",
            "wal_level=replica",
            "max_wal_senders=4",
            "hot_standby=on",
            *self.options,
        ]
        argv = [str(self.bin / "postgres"), "-D", str(self.data)]
        for setting in settings:
            argv += ["-c", setting]
        handle = open(self.log, "ab")  # noqa: SIM115 - lives with the process
        # postgres -D in the foreground: its PID is the postmaster's, for kill -9
        self.process = subprocess.Popen(
            _as_server_user(argv), stdout=handle, stderr=subprocess.STDOUT
        )
        wait_port(self.port, timeout=60)
        return self

    @property
    def pid(self) -> int:
        """The postmaster's PID (runuser execs it, so it is the child's)."""
        assert self.process is not None
        return self.process.pid

    def kill9(self) -> None:
        """The machine is gone: the postmaster dies at once (its backends follow it)."""
        if self.process is not None:
            postmaster = _postmaster_pid(self.data) or self.process.pid
            os.kill(postmaster, signal.SIGKILL)
            self.process.wait(30)
            self.process = None

    def promote(self) -> None:
        subprocess.run(
            _as_server_user(
                [str(self.bin / "pg_ctl"), "promote", "-w", "-t", "60", "-D", str(self.data)]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        postmaster = _postmaster_pid(self.data) or self.process.pid
        try:
            os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown: a test's data is thrown away
            self.process.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.kill(postmaster, signal.SIGKILL)
            self.process.wait(10)
        self.process = None


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


@dataclass
class Pair:
    """A primary and a synchronous streaming replica of it, in a directory of their own."""

    root: Path
    primary: Server
    replica: Server
    database: str = "hallwatch"

    def url(self) -> str:
        """Central's URL: both hosts, the one that accepts writes (libpq's multi-host syntax,
        which SQLAlchemy's asyncpg dialect hands to asyncpg)."""
        return (
            f"postgresql+asyncpg://postgres@/{self.database}"
            f"?host=127.0.0.1:{self.primary.port}&host=127.0.0.1:{self.replica.port}"
            "&target_session_attrs=read-write"
        )

    def url_of(self, server: Server) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{server.port}/{self.database}"

    def stop(self) -> None:
        for server in (self.replica, self.primary):
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_pair(log_dir: Path, database: str = "hallwatch") -> Pair:
    binaries = pg_bin()
    assert binaries is not None, "no PostgreSQL server binaries under /usr/lib/postgresql"
    # not under pytest's tmp_path: as root that is 0700, and the servers run as postgres
    root = Path(tempfile.mkdtemp(prefix="hw-pgpair-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    primary_dir, replica_dir = root / "primary", root / "replica"
    subprocess.run(
        _as_server_user(
            [
                str(binaries / "initdb"),
                "-D",
                str(primary_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    with open(primary_dir / "pg_hba.conf", "a") as hba:
        hba.write("host replication postgres 127.0.0.1/32 trust\n")
    primary = Server(
        binaries,
        primary_dir,
        free_port(),
        log_dir / "pg-primary.log",
    ).start()
    pair = Pair(
        root,
        primary,
        Server(binaries, replica_dir, free_port(), log_dir / "pg-replica.log"),
        database,
    )
    try:
        _wait_ready(binaries, primary.port)
        subprocess.run(
            _as_server_user(
                [
                    str(binaries / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(primary.port),
                    "-U",
                    "postgres",
                    database,
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            _as_server_user(
                [
                    str(binaries / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(primary.port),
                    "-U",
                    "postgres",
                    "-D",
                    str(replica_dir),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        pair.replica.start()
        _wait_ready(binaries, pair.replica.port)
        # synchronous from now on: set here, after the copy, so the replica does not inherit it
        # (and createdb above did not wait for a standby that did not exist yet)
        _psql(binaries, primary.port, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        _psql(binaries, primary.port, "SELECT pg_reload_conf()")
        deadline = time.monotonic() + 60
        while _psql(binaries, primary.port, SYNC_STATE) != "sync":
            assert time.monotonic() < deadline, "the replica never became synchronous"
            time.sleep(0.1)
    except BaseException:
        pair.stop()
        raise
    return pair


SYNC_STATE = "SELECT coalesce(max(sync_state), '') FROM pg_stat_replication"


def _psql(binaries: Path, port: int, sql: str) -> str:
    done = subprocess.run(
        [
            str(binaries / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qAtc",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()


def _wait_ready(binaries: Path, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"],
            capture_output=True,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"PostgreSQL on {port} not ready after {timeout} s")

"""Writing a file so that a power cut leaves the old one or the new one, never a torn one.

Both sides keep state in small files (keys, certificates, the accepted command version, the
active configuration, evidence); every such write goes through here: a temporary file in the same
directory with its mode (and group) set from the first byte, written whole, fsynced, renamed over
the target, and the directory fsynced so the rename itself survives.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Write a secret atomically, readable by its owner only (0600 from the first byte)."""
    write_atomic(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    write_atomic(path, data, 0o644)


def write_atomic(path: Path, data: bytes, mode: int, *, group: int | None = None) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory. ``group``: a gid the
    file belongs to before it appears (a config readable by the service's group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it
        if group is not None:
            os.fchown(fd, -1, group)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

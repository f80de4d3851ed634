"""Applicant data (申请人) kept to the minimum: a masked form for people, a salted digest for
matching the same applicant across cases. The clear values never reach the database.

The salt lives in central's data directory, outside the database, so that a copy of the
database alone does not let anyone try every possible ID number against the digests (there are
only ~10^10 plausible resident IDs). It is created once; losing it only means new digests no
longer match old ones. Several aggregator hosts must share the same file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from central.cases.model import ApplicantIn

SALT_FILE = "applicant.salt"
SALT_BYTES = 32


def load_or_create_salt(data_dir: Path) -> bytes:
    """The data directory's salt, created (mode 0600) the first time."""
    path = data_dir / SALT_FILE
    try:
        salt = path.read_bytes()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        salt = secrets.token_bytes(SALT_BYTES)
        tmp = path.with_name(f".{SALT_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, salt)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process got there first: use theirs
        except FileExistsError:
            salt = path.read_bytes()
        finally:
            tmp.unlink()
    if len(salt) < 16:
        raise ValueError(f"{path}: the applicant salt is too short ({len(salt)} bytes)")
    return salt


def mask_name(name: str) -> str:
    """张三 → 张*, 欧阳娜娜 → 欧***; an organisation keeps its first two characters."""
    if len(name) <= 1:
        return "*"
    keep = 2 if len(name) > 6 else 1
    return name[:keep] + "*" * (len(name) - keep)


def mask_phone(phone: str) -> str:
    """13812345678 → 138****5678; landlines keep only the last four digits."""
    if len(phone) == 11 and phone.startswith("1"):
        return phone[:3] + "****" + phone[-4:]
    return "*" * (len(phone) - 4) + phone[-4:]


def mask_id(id_no: str) -> str:
    """Only the first and last character stay: 1****************X."""
    return id_no[0] + "*" * (len(id_no) - 2) + id_no[-1]


@dataclass(frozen=True, slots=True)
class MaskedApplicant:
    masked: str  # e.g. "张* 138****5678 1****************X"
    digest: str | None  # HMAC-SHA256 of the ID number (or of the phone without one)


class ApplicantMasker:
    def __init__(self, salt: bytes) -> None:
        if len(salt) < 16:
            raise ValueError("salt too short")
        self._salt = salt

    def digest(self, kind: str, value: str) -> str:
        return hmac.new(self._salt, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def mask(self, applicant: ApplicantIn | None) -> MaskedApplicant | None:
        if applicant is None or applicant.empty:
            return None
        parts = []
        if applicant.name is not None:
            parts.append(mask_name(applicant.name))
        if applicant.phone is not None:
            parts.append(mask_phone(applicant.phone))
        if applicant.id_no is not None:
            parts.append(mask_id(applicant.id_no))
        if applicant.id_no is not None:
            digest: str | None = self.digest("id", applicant.id_no)
        elif applicant.phone is not None:
            digest = self.digest("tel", applicant.phone)
        else:
            digest = None
        return MaskedApplicant(" ".join(parts), digest)

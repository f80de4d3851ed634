"""The CA on disk and its ledger of every certificate issued (like openssl's index.txt), so that
re-provisioning a gateway revokes the certificate it replaces, and the CRL made from it."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from central.security.ca import (
    CertificateAuthority,
    GatewayIdentity,
    Identity,
    PkiError,
    RevokedCertificate,
    Role,
    bridge_username,
    central_username,
    feeder_username,
    parse_username,
)
from hallkit.atomicfile import write_private, write_public
from protocols.provisioning import gateway_username


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    serial: int
    common_name: str
    role: Role
    issued_at: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": f"{self.serial:x}",
            "cn": self.common_name,
            "role": str(self.role),
            "issued_at": self.issued_at.isoformat(),
            "not_after": self.not_after.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IssuedCertificate:
        revoked = data.get("revoked_at")
        return cls(
            serial=int(data["serial"], 16),
            common_name=data["cn"],
            role=Role(data["role"]),
            issued_at=dt.datetime.fromisoformat(data["issued_at"]),
            not_after=dt.datetime.fromisoformat(data["not_after"]),
            revoked_at=dt.datetime.fromisoformat(revoked) if revoked else None,
            reason=data.get("reason", ""),
        )

    def active(self, at: dt.datetime) -> bool:
        return self.revoked_at is None and at <= self.not_after


class PkiStore:
    """A CA on disk with its ledger::

        ca.crt  ca.key (0600)  issued.json  crl.pem  certs/<serial hex>.pem  .lock

    Every change takes an exclusive lock, so concurrent provisioning commands cannot lose
    each other's ledger entries.
    """

    CA_CERT = "ca.crt"
    CA_KEY = "ca.key"
    LEDGER = "issued.json"
    CRL = "crl.pem"

    def __init__(self, directory: Path, ca: CertificateAuthority) -> None:
        self.directory = directory
        self.ca = ca

    @classmethod
    def create(cls, directory: Path, name: str = "Hallwatch CA") -> PkiStore:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        if (directory / cls.CA_KEY).exists():
            raise PkiError(f"a CA already exists in {directory}")
        ca = CertificateAuthority.create(name)
        ca.save(directory / cls.CA_CERT, directory / cls.CA_KEY)
        store = cls(directory, ca)
        with store._locked():
            store._write_ledger({"v": 1, "crl_number": 0, "certificates": []})
        store.write_crl()  # the broker refuses everyone if crlfile is missing or unreadable
        return store

    @classmethod
    def open(cls, directory: Path) -> PkiStore:
        ca = CertificateAuthority.load(directory / cls.CA_CERT, directory / cls.CA_KEY)
        return cls(directory, ca)

    @classmethod
    def open_or_create(cls, directory: Path, name: str = "Hallwatch CA") -> PkiStore:
        if (directory / cls.CA_KEY).exists():
            return cls.open(directory)
        return cls.create(directory, name)

    @property
    def ca_cert_path(self) -> Path:
        return self.directory / self.CA_CERT

    @property
    def crl_path(self) -> Path:
        return self.directory / self.CRL

    # -- ledger I/O ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_ledger(self) -> dict[str, Any]:
        path = self.directory / self.LEDGER
        if not path.exists():
            return {"v": 1, "crl_number": 0, "certificates": []}
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def _write_ledger(self, data: dict[str, Any]) -> None:
        write_private(self.directory / self.LEDGER, json.dumps(data, indent=1).encode())

    def issued(self) -> list[IssuedCertificate]:
        return [IssuedCertificate.from_json(c) for c in self._read_ledger()["certificates"]]

    def _record(self, identity: Identity, role: Role, supersede: bool) -> None:
        now = _now()
        with self._locked():
            ledger = self._read_ledger()
            if supersede:
                for entry in ledger["certificates"]:
                    if entry["cn"] == identity.common_name and entry["revoked_at"] is None:
                        entry["revoked_at"] = now.isoformat()
                        entry["reason"] = "superseded"
            record = IssuedCertificate(
                identity.serial, identity.common_name, role, now, identity.cert.not_valid_after_utc
            )
            ledger["certificates"].append(record.to_json())
            write_public(self.directory / "certs" / f"{identity.serial:x}.pem", identity.cert_pem())
            self._write_ledger(ledger)

    # -- issuing -------------------------------------------------------------------------

    def issue_gateway(self, hall: str, gateway: str, supersede: bool = True) -> GatewayIdentity:
        """Issue and record; by default revoke the certificates this one replaces.

        A replacement gateway gets a new key; the old one (a stolen or broken box) must stop
        working, so ``write_crl`` and the ACL reload that follow provisioning shut it out.
        """
        identity = self.ca.issue_gateway(hall, gateway)
        self._record(identity, Role.GATEWAY, supersede)
        return identity

    def issue_central(self, name: str = "main") -> Identity:
        identity = self.ca.issue_client(central_username(name))
        self._record(identity, Role.CENTRAL, supersede=False)
        return identity

    def issue_bridge(self, name: str) -> Identity:
        identity = self.ca.issue_client(bridge_username(name))
        self._record(identity, Role.BRIDGE, supersede=False)
        return identity

    def issue_feeder(self, name: str) -> Identity:
        identity = self.ca.issue_client(feeder_username(name))
        self._record(identity, Role.FEEDER, supersede=True)
        return identity

    def issue_server(self, names: Iterable[str] = ()) -> Identity:
        identity = self.ca.issue_server(names)
        self._record(identity, Role.SERVER, supersede=False)
        return identity

    # -- revoking ------------------------------------------------------------------------

    def revoke_serial(self, serial: int, reason: str = "revoked") -> bool:
        with self._locked():
            ledger = self._read_ledger()
            hit = False
            for entry in ledger["certificates"]:
                if int(entry["serial"], 16) == serial and entry["revoked_at"] is None:
                    entry["revoked_at"] = _now().isoformat()
                    entry["reason"] = reason
                    hit = True
            if hit:
                self._write_ledger(ledger)
        return hit

    def revoke_name(self, username: str, reason: str = "revoked") -> list[int]:
        """Revoke every live certificate with this CN; returns their serials."""
        parse_username(username)
        with self._locked():
            ledger = self._read_ledger()
            serials = []
            for entry in ledger["certificates"]:
                if entry["cn"] == username and entry["revoked_at"] is None:
                    entry["revoked_at"] = _now().isoformat()
                    entry["reason"] = reason
                    serials.append(int(entry["serial"], 16))
            if serials:
                self._write_ledger(ledger)
        return serials

    def revoke_gateway(self, hall: str, gateway: str, reason: str = "revoked") -> list[int]:
        return self.revoke_name(gateway_username(hall, gateway), reason)

    def revoked(self) -> list[RevokedCertificate]:
        return [
            RevokedCertificate(c.serial, c.revoked_at)
            for c in self.issued()
            if c.revoked_at is not None
        ]

    def is_revoked(self, serial: int) -> bool:
        return any(c.serial == serial and c.revoked_at is not None for c in self.issued())

    def active_names(self, role: Role | None = None) -> set[str]:
        """CNs with at least one unrevoked, unexpired certificate (who may use the broker)."""
        now = _now()
        return {
            c.common_name
            for c in self.issued()
            if c.active(now) and (role is None or c.role is role)
        }

    def write_crl(self, path: Path | None = None) -> x509.CertificateRevocationList:
        """Re-issue the CRL with a new number; written to ``path`` and to the store."""
        with self._locked():
            ledger = self._read_ledger()
            ledger["crl_number"] = int(ledger.get("crl_number", 0)) + 1
            revoked = [
                RevokedCertificate(int(c["serial"], 16), dt.datetime.fromisoformat(c["revoked_at"]))
                for c in ledger["certificates"]
                if c["revoked_at"] is not None
            ]
            crl = self.ca.crl(revoked, ledger["crl_number"])
            self._write_ledger(ledger)
            # Inside the lock: a slower writer must not put an older CRL over a newer one.
            pem = crl.public_bytes(serialization.Encoding.PEM)
            write_public(self.crl_path, pem)
            if path is not None and path != self.crl_path:
                write_public(path, pem)
        return crl

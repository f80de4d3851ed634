"""Central's certificate authority: identities for the broker, gateways, central and bridges.

Everything is ECDSA P-256 made with ``cryptography`` alone (no ``openssl`` command line).

Broker usernames. The broker runs with ``use_identity_as_username``, so a certificate's common
name (CN) *is* the MQTT username, and with ``use_username_as_clientid`` also the client id.
Names live in three namespaces that cannot collide, because ``.`` is not allowed in hall,
gateway or instance ids:

    gw.{hall}.{gateway}    a gateway, pinned to hw/v1/{hall}/{gateway}/… by the ACL
    central.{name}         one per aggregator process: the client id is forced to the username,
                           so two processes sharing one identity would take over each other
    bridge.{name}          a lower-tier broker forwarding its halls to this one

The ACL is generated from the registry with one ``user`` block per gateway
(``central.security.broker_acl``) rather than ``%u`` patterns: a pattern grants every
certificate the CA ever signed, whereas dropping a revoked gateway's block takes effect on its
*open* connection at the next SIGHUP. Revocation = CRL + ACL + one SIGHUP
(deploy/mosquitto/README.md has the measurements).

``PkiStore`` keeps the CA and a ledger of every certificate issued (like openssl's index.txt),
so that re-provisioning a gateway revokes the certificate it replaces.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.provisioning import GATEWAY_PREFIX, gateway_username

# A hall's gateway is installed once and should not need a visit for its certificate: five
# years covers the usual hardware refresh; the CA outlives every certificate it signs.
CA_VALID_DAYS = 20 * 365
LEAF_VALID_DAYS = 5 * 365
# The broker keeps the CRL it loaded in memory, and OpenSSL refuses *every* client once that
# CRL is past its nextUpdate (measured with Mosquitto 2.0.11), so the CRL is given a long life
# and re-issued on every revocation instead of on a short schedule.
CRL_VALID_DAYS = 5 * 365
# Certificates are valid from a little in the past: a gateway without a real-time clock may be
# behind by minutes before NTP and would otherwise see a "not yet valid" broker certificate.
BACKDATE = dt.timedelta(hours=1)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Role(StrEnum):
    GATEWAY = GATEWAY_PREFIX
    CENTRAL = "central"
    BRIDGE = "bridge"
    SERVER = "server"
    FEEDER = "feeder"  # an approval system (审批系统) sending cases over MQTT


class PkiError(ValueError):
    """A certificate, key or name that does not fit this PKI."""


def central_username(name: str = "main") -> str:
    return f"{Role.CENTRAL}.{_check_name(name)}"


def feed_name(name: str = "main") -> str:
    """The case feed's own central identity beside aggregator ``name`` (its own client id)."""
    return f"{_check_name(name)}-cases"


def bridge_username(name: str) -> str:
    return f"{Role.BRIDGE}.{_check_name(name)}"


def feeder_username(name: str) -> str:
    return f"{Role.FEEDER}.{_check_name(name)}"


@dataclass(frozen=True, slots=True)
class BrokerUser:
    role: Role
    parts: tuple[str, ...]


def parse_username(username: str) -> BrokerUser:
    """Split a broker username into its role and ids; the inverse of the *_username()."""
    role_text, _, rest = username.partition(".")
    try:
        role = Role(role_text)
    except ValueError:
        raise PkiError(f"username {username!r} has no known role prefix") from None
    parts = tuple(rest.split("."))
    expected = {Role.GATEWAY: 2, Role.CENTRAL: 1, Role.BRIDGE: 1, Role.FEEDER: 1}.get(role)
    if expected is None or len(parts) != expected or not all(_NAME.match(p) for p in parts):
        raise PkiError(f"username {username!r} is not a well-formed {role} name")
    return BrokerUser(role, parts)


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise PkiError(f"name {name!r} must be 1–64 characters of [A-Za-z0-9_-]")
    return name


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise PkiError("certificate must carry exactly one common name")
    value = names[0].value
    return value if isinstance(value, str) else value.decode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def same_key(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)


@dataclass(frozen=True, slots=True)
class Identity:
    """A private key and the certificate our CA issued for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def common_name(self) -> str:
        return common_name(self.cert)

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def key_pem(self) -> bytes:
        return key_pem(self.key)

    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Key 0600, certificate 0644, each written atomically."""
        write_private(key_path, self.key_pem())
        write_public(cert_path, self.cert_pem())


@dataclass(frozen=True, slots=True)
class GatewayIdentity(Identity):
    hall: str
    gateway: str

    @property
    def username(self) -> str:
        return gateway_username(self.hall, self.gateway)


@dataclass(frozen=True, slots=True)
class RevokedCertificate:
    serial: int
    revoked_at: dt.datetime


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,  # OpenSSL rejects a CRL whose issuer lacks cRLSign
    encipher_only=False,
    decipher_only=False,
)
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True,  # ECDHE-ECDSA: the leaf key only ever signs the handshake
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(
        cls, name: str = "Hallwatch CA", valid_days: int = CA_VALID_DAYS
    ) -> CertificateAuthority:
        key = new_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hallwatch"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not same_key(key, cert):
            raise PkiError("CA key does not match the CA certificate")
        return cls(key, cert)

    def save(self, cert_path: Path, key_path: Path) -> None:
        write_private(key_path, key_pem(self.key))
        write_public(cert_path, cert_pem(self.cert))

    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    # -- issuing -------------------------------------------------------------------------

    def _leaf(
        self,
        cn: str,
        usage: x509.ObjectIdentifier,
        sans: Iterable[x509.GeneralName] = (),
        valid_days: int = LEAF_VALID_DAYS,
    ) -> Identity:
        key = new_key()
        now = _now()
        not_after = min(now + dt.timedelta(days=valid_days), self.cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_LEAF_USAGE, critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        san_list = list(sans)
        if san_list:
            builder = builder.add_extension(x509.SubjectAlternativeName(san_list), critical=False)
        return Identity(key, builder.sign(self.key, hashes.SHA256()))

    def issue_server(
        self, names: Iterable[str] = (), valid_days: int = LEAF_VALID_DAYS
    ) -> Identity:
        """The broker's certificate for localhost, 127.0.0.1 and ``names`` (DNS names or IPs)."""
        extra = [n for n in names if n]
        sans: list[x509.GeneralName] = []
        for name in dict.fromkeys(["localhost", "127.0.0.1", *extra]):
            ip = _ip(name)
            sans.append(x509.IPAddress(ip) if ip is not None else x509.DNSName(name))
        cn = next((n for n in extra if _ip(n) is None), "localhost")
        return self._leaf(cn, ExtendedKeyUsageOID.SERVER_AUTH, sans, valid_days)

    def issue_client(self, username: str, valid_days: int = LEAF_VALID_DAYS) -> Identity:
        """A client certificate whose CN is a broker username (see parse_username)."""
        parse_username(username)
        return self._leaf(username, ExtendedKeyUsageOID.CLIENT_AUTH, (), valid_days)

    def issue_gateway(
        self, hall: str, gateway: str, valid_days: int = LEAF_VALID_DAYS
    ) -> GatewayIdentity:
        issued = self.issue_client(gateway_username(hall, gateway), valid_days)
        return GatewayIdentity(issued.key, issued.cert, hall, gateway)

    # -- revocation ----------------------------------------------------------------------

    def crl(
        self,
        revoked: Iterable[RevokedCertificate],
        number: int,
        valid_days: int = CRL_VALID_DAYS,
    ) -> x509.CertificateRevocationList:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - BACKDATE)
            .next_update(now + dt.timedelta(days=valid_days))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        for entry in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(entry.serial)
                .revocation_date(entry.revoked_at)
                .build()
            )
        return builder.sign(self.key, hashes.SHA256())

    def verify_issued(self, cert: x509.Certificate, at: dt.datetime | None = None) -> None:
        """Raise PkiError unless ``cert`` was signed by this CA and is valid at ``at``."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PkiError(f"certificate was not issued by this CA ({exc!r})") from None
        at = at or _now()
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise PkiError("certificate is outside its validity period")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def issue_gateway_identity(ca: CertificateAuthority, hall: str, gateway: str) -> GatewayIdentity:
    """The key and certificate for one gateway (CN ``gw.{hall}.{gateway}``), not recorded.

    Prefer ``PkiStore.issue_gateway``, which records it so that it can be revoked.
    """
    return ca.issue_gateway(hall, gateway)


# -- the ledger ----------------------------------------------------------------------------


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


# -- files ---------------------------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Write a secret atomically, readable by its owner only (0600 from the first byte)."""
    write_atomic(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    write_atomic(path, data, 0o644)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it, a stale temp file widened it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())

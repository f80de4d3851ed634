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

The CA on disk, with its ledger of every certificate issued and the CRL, is
``central.security.ca_store.PkiStore``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hallkit.atomicfile import write_private, write_public
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


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())

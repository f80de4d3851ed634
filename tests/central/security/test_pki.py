"""central.security.ca and ca_store: the CA, its certificates, the ledger and the CRL; openssl
as an outside judge."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from central.security.ca import (
    CertificateAuthority,
    PkiError,
    Role,
    bridge_username,
    central_username,
    issue_gateway_identity,
    parse_username,
)
from central.security.ca_store import PkiStore
from hallkit.atomicfile import write_private
from protocols.provisioning import gateway_username
from protocols.topics import TopicError

OPENSSL = shutil.which("openssl")


@pytest.fixture
def store(tmp_path: Path) -> PkiStore:
    return PkiStore.create(tmp_path / "pki")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _openssl_verify(store: PkiStore, cert_pem: bytes, tmp_path: Path, crl: bool = True) -> str:
    assert OPENSSL, "openssl is the independent check"
    cert = tmp_path / "check.crt"
    cert.write_bytes(cert_pem)
    args = [OPENSSL, "verify", "-CAfile", str(store.ca_cert_path)]
    if crl:
        args += ["-crl_check", "-CRLfile", str(store.crl_path)]
    done = subprocess.run([*args, str(cert)], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


# -- names -----------------------------------------------------------------------------------


def test_usernames_split_back_and_cannot_collide() -> None:
    assert gateway_username("hallA", "gw-1") == "gw.hallA.gw-1"
    assert parse_username("gw.hallA.gw-1").parts == ("hallA", "gw-1")
    assert parse_username("central.main").role is Role.CENTRAL
    assert parse_username(bridge_username("county1")).parts == ("county1",)
    # Ids cannot hold ".", so no gateway name can pose as central or as another gateway.
    with pytest.raises(TopicError):
        gateway_username("central", "main.x")
    for bad in ("gw.hallA", "gw.a.b.c", "central", "admin.x", "gw.a.b c", "gw..x"):
        with pytest.raises(PkiError):
            parse_username(bad)


# -- the CA and what it issues ---------------------------------------------------------------


def test_store_keeps_keys_private_and_reloads(store: PkiStore, tmp_path: Path) -> None:
    assert _mode(store.directory / "ca.key") == 0o600
    assert _mode(store.directory) == 0o700
    assert _mode(store.ca_cert_path) == 0o644
    again = PkiStore.open(store.directory)
    assert again.ca.cert == store.ca.cert
    with pytest.raises(PkiError):
        PkiStore.create(store.directory)
    with pytest.raises(PkiError):
        CertificateAuthority.load(store.ca_cert_path, _foreign_key(tmp_path))


def _foreign_key(tmp_path: Path) -> Path:
    other = CertificateAuthority.create()
    other.save(tmp_path / "other.crt", tmp_path / "other.key")
    return tmp_path / "other.key"


def test_ca_certificate_is_a_p256_ca_that_may_sign_crls(store: PkiStore) -> None:
    cert = store.ca.cert
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign


def test_gateway_certificate(store: PkiStore, tmp_path: Path) -> None:
    identity = store.issue_gateway("hallA", "gw-1")
    assert identity.common_name == identity.username == "gw.hallA.gw-1"
    usages = identity.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    store.ca.verify_issued(identity.cert)
    identity.write(tmp_path / "gw.crt", tmp_path / "gw.key")
    assert _mode(tmp_path / "gw.key") == 0o600
    assert _mode(tmp_path / "gw.crt") == 0o644
    assert "OK" in _openssl_verify(store, identity.cert_pem(), tmp_path)


def test_server_certificate_names(store: PkiStore) -> None:
    identity = store.issue_server(["broker.example.cn", "10.1.2.3"])
    sans = identity.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "broker.example.cn"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.1.2.3"]
    usages = identity.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_a_foreign_ca_is_told_apart(store: PkiStore) -> None:
    impostor = CertificateAuthority.create("Impostor").issue_gateway("hallA", "gw-1")
    with pytest.raises(PkiError):
        store.ca.verify_issued(impostor.cert)


def test_writing_a_key_ignores_the_umask_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "secret.key"
    old = os.umask(0)
    try:
        write_private(path, b"one")
        write_private(path, b"two")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600 and path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]


# -- revocation ------------------------------------------------------------------------------


def test_revocation_shows_in_the_crl_as_openssl_reads_it(store: PkiStore, tmp_path: Path) -> None:
    keep = store.issue_gateway("hallA", "gw-1")
    drop = store.issue_gateway("hallB", "gw-1")
    assert store.revoke_gateway("hallB", "gw-1") == [drop.serial]
    crl = store.write_crl()
    assert crl.get_revoked_certificate_by_serial_number(drop.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(keep.serial) is None
    assert crl.is_signature_valid(store.ca.key.public_key())
    assert "OK" in _openssl_verify(store, keep.cert_pem(), tmp_path)
    assert "certificate revoked" in _openssl_verify(store, drop.cert_pem(), tmp_path)
    assert store.active_names(Role.GATEWAY) == {"gw.hallA.gw-1"}


def test_crl_numbers_grow_and_the_crl_lives_for_years(store: PkiStore) -> None:
    first = store.write_crl()
    second = store.write_crl()
    number = x509.CRLNumber
    assert (
        second.extensions.get_extension_for_class(number).value.crl_number
        > first.extensions.get_extension_for_class(number).value.crl_number
    )
    assert second.next_update_utc is not None and second.last_update_utc is not None
    assert (second.next_update_utc - second.last_update_utc).days > 365


def test_reissuing_a_gateway_revokes_what_it_replaces(store: PkiStore) -> None:
    old = store.issue_gateway("hallA", "gw-1")
    new = store.issue_gateway("hallA", "gw-1")
    assert store.is_revoked(old.serial) and not store.is_revoked(new.serial)
    reasons = {c.serial: c.reason for c in store.issued()}
    assert reasons[old.serial] == "superseded"


def test_unrecorded_identity_is_not_in_the_ledger(store: PkiStore) -> None:
    identity = issue_gateway_identity(store.ca, "hallA", "gw-9")
    assert identity.serial not in {c.serial for c in store.issued()}


def test_concurrent_issuing_loses_no_ledger_entry(store: PkiStore) -> None:
    serials: list[int] = []

    def issue(n: int) -> None:
        serials.append(store.issue_gateway("hallA", f"gw-{n}").serial)

    threads = [threading.Thread(target=issue, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(serials) == sorted(c.serial for c in store.issued())


def test_central_and_bridge_identities(store: PkiStore) -> None:
    assert store.issue_central("agg2").common_name == central_username("agg2")
    assert store.issue_bridge("county1").common_name == "bridge.county1"
    with pytest.raises(PkiError):
        store.issue_central("bad.name")

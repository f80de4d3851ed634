"""Installing a provisioning bundle on the gateway (``hallwatch-edge provision apply``).

The bundle (``protocols.provisioning``) is checked completely before anything is written:
only the expected regular files, each matching the SHA-256 in the manifest; a certificate
signed by the bundled CA, named for the manifest's hall and gateway, for client use, not
expired; the key that belongs to it; an Ed25519 command key; a TLS broker address.

Installation never leaves a mix of old and new files: the identity is staged in its own
directory and ``current`` is a symlink swapped with one rename::

    target_dir/identity-<serial>/{manifest.json, ca.crt, gateway.crt, gateway.key (0600), …}
    target_dir/current -> identity-<serial>

The previous identity is kept beside it for a rollback; older ones are removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from protocols.provisioning import (
    BUNDLE_FILES,
    CA_CERT,
    COMMAND_KEY,
    GATEWAY_CERT,
    GATEWAY_KEY,
    MANIFEST,
    MAX_FILE_BYTES,
    MAX_MANIFEST_BYTES,
    SECRET_FILES,
    BundleManifest,
    parse_broker_url,
)

CURRENT = "current"
_ALL_FILES = BUNDLE_FILES | {MANIFEST}


class BundleError(ValueError):
    """The bundle is not one we may install; nothing was changed."""


@dataclass(frozen=True, slots=True)
class InstalledBundle:
    directory: Path
    manifest: BundleManifest

    @property
    def ca_file(self) -> Path:
        return self.directory / CA_CERT

    @property
    def cert_file(self) -> Path:
        return self.directory / GATEWAY_CERT

    @property
    def key_file(self) -> Path:
        return self.directory / GATEWAY_KEY

    @property
    def command_key_file(self) -> Path:
        return self.directory / COMMAND_KEY

    @property
    def broker(self) -> tuple[str, str, int]:
        """(scheme, host, port) of the broker; scheme ``mqtts`` means use the TLS files."""
        return parse_broker_url(self.manifest.broker_url)


# -- reading -----------------------------------------------------------------------------------


def read_bundle(path: Path) -> dict[str, bytes]:
    """The bundle's files by name, from a ``.tar.gz`` or a directory, refusing anything else."""
    if path.is_dir():
        return _read_directory(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            return _read_tar(tar)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"{path} is not a readable bundle: {exc}") from None


def _limit(name: str) -> int:
    return MAX_MANIFEST_BYTES if name == MANIFEST else MAX_FILE_BYTES


def _read_tar(tar: tarfile.TarFile) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for count, member in enumerate(tar, start=1):
        if count > len(_ALL_FILES):
            raise BundleError("bundle has more members than a bundle can have")
        # Exact names only: no directories, "..", absolute paths, links or devices.
        if member.name not in _ALL_FILES or not member.isreg():
            raise BundleError(f"unexpected member {member.name!r} in bundle")
        if member.name in files:
            raise BundleError(f"{member.name} appears twice in bundle")
        if member.size > _limit(member.name):
            raise BundleError(f"{member.name} is too large ({member.size} bytes)")
        handle = tar.extractfile(member)
        if handle is None:
            raise BundleError(f"{member.name} cannot be read")
        files[member.name] = handle.read(_limit(member.name) + 1)
    return files


def _read_directory(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in path.iterdir():
        info = entry.lstat()
        if entry.name not in _ALL_FILES or not stat.S_ISREG(info.st_mode):
            raise BundleError(f"unexpected entry {entry.name!r} in bundle directory")
        if info.st_size > _limit(entry.name):
            raise BundleError(f"{entry.name} is too large ({info.st_size} bytes)")
        files[entry.name] = entry.read_bytes()
    return files


# -- checking ----------------------------------------------------------------------------------


def validate_bundle(
    files: dict[str, bytes], *, allow_plain: bool = False, now: dt.datetime | None = None
) -> BundleManifest:
    if set(files) != _ALL_FILES:
        missing = sorted(_ALL_FILES - set(files))
        raise BundleError(f"bundle is incomplete; missing {', '.join(missing)}")
    try:
        manifest = BundleManifest.model_validate_json(files[MANIFEST])
    except ValidationError as exc:
        raise BundleError(f"manifest is invalid: {exc.errors()[0]['msg']}") from None
    for name, entry in manifest.files.items():
        if hashlib.sha256(files[name]).hexdigest() != entry.sha256:
            raise BundleError(f"{name} does not match the manifest (damaged or altered)")
    scheme, _, _ = parse_broker_url(manifest.broker_url)
    if scheme != "mqtts" and not allow_plain:
        raise BundleError(f"broker {manifest.broker_url} is not TLS (mqtts://)")

    try:
        ca = x509.load_pem_x509_certificate(files[CA_CERT])
        cert = x509.load_pem_x509_certificate(files[GATEWAY_CERT])
        key = serialization.load_pem_private_key(files[GATEWAY_KEY], None)
        command_key = serialization.load_pem_public_key(files[COMMAND_KEY])
    except ValueError as exc:
        raise BundleError(f"a certificate or key does not parse: {exc}") from None
    _check_ca(ca)
    _check_gateway_cert(cert, ca, manifest, now or dt.datetime.now(dt.UTC))
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_public_key(key, cert):
        raise BundleError("gateway.key does not belong to gateway.crt")
    if not isinstance(command_key, Ed25519PublicKey):
        raise BundleError("command-signing.pub is not an Ed25519 public key")
    return manifest


def _check_ca(ca: x509.Certificate) -> None:
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise BundleError("ca.crt is not a CA certificate") from None
    if not constraints.ca:
        raise BundleError("ca.crt is not a CA certificate")


def _check_gateway_cert(
    cert: x509.Certificate, ca: x509.Certificate, manifest: BundleManifest, now: dt.datetime
) -> None:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise BundleError("gateway.crt is not signed by the bundled CA") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != manifest.username:
        raise BundleError(f"gateway.crt is not issued to {manifest.username}")
    if f"{cert.serial_number:x}" != manifest.cert_serial:
        raise BundleError("gateway.crt serial differs from the manifest")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise BundleError("gateway.crt is not marked for client authentication") from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise BundleError("gateway.crt is not marked for client authentication")
    # Only expiry: before NTP the gateway's clock may be far behind (no real-time clock),
    # which must not block an installation.
    if now > cert.not_valid_after_utc:
        raise BundleError(f"gateway.crt expired {cert.not_valid_after_utc.isoformat()}")


def _same_public_key(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)


# -- installing --------------------------------------------------------------------------------


def apply_bundle(
    bundle_path: Path,
    target_dir: Path,
    *,
    allow_plain: bool = False,
    owner: tuple[int, int] | None = None,
    now: dt.datetime | None = None,
) -> InstalledBundle:
    """Validate ``bundle_path`` and make it the gateway's current identity.

    ``owner`` (uid, gid): when run as root for a service user, who should own the files.
    ``allow_plain`` admits an ``mqtt://`` broker address (development only).
    """
    files = read_bundle(bundle_path)
    manifest = validate_bundle(files, allow_plain=allow_plain, now=now)

    target_dir.mkdir(parents=True, exist_ok=True)
    name = f"identity-{manifest.cert_serial}"
    staging = target_dir / f".staging-{secrets.token_hex(6)}"
    staging.mkdir(mode=0o750)
    try:
        for file_name, data in files.items():
            _write_file(staging / file_name, data, 0o600 if file_name in SECRET_FILES else 0o644)
        _fsync_dir(staging)
        if owner is not None:
            for entry in [staging, *staging.iterdir()]:
                os.chown(entry, *owner)
        staging.chmod(0o750)
        final = target_dir / name
        if final.exists():  # the same bundle again: replace it whole
            stale = target_dir / f".stale-{secrets.token_hex(6)}"
            os.rename(final, stale)
            os.rename(staging, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = _current_name(target_dir)
    link = target_dir / f".{CURRENT}-{secrets.token_hex(6)}"
    os.symlink(name, link)
    os.replace(link, target_dir / CURRENT)
    _fsync_dir(target_dir)
    for entry in target_dir.glob("identity-*"):
        if entry.name not in (name, previous):
            shutil.rmtree(entry, ignore_errors=True)
    return InstalledBundle(target_dir / CURRENT, manifest)


def load_installed(target_dir: Path) -> InstalledBundle:
    """The identity ``apply_bundle`` installed last (checked again, as at installation)."""
    directory = target_dir / CURRENT
    files = {name: (directory / name).read_bytes() for name in _ALL_FILES}
    manifest = validate_bundle(files, allow_plain=True)
    return InstalledBundle(directory, manifest)


def _current_name(target_dir: Path) -> str | None:
    try:
        return os.readlink(target_dir / CURRENT)
    except OSError:
        return None


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def manifest_summary(manifest: BundleManifest) -> str:
    """One line for the technician: who this gateway now is and where it will connect."""
    return json.dumps(
        {"hall": manifest.hall, "gateway": manifest.gateway, "broker": manifest.broker_url},
        ensure_ascii=False,
    )

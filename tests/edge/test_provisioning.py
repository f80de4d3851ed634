"""A bundle from central.gateways.bundle installed by edge.provisioning, and the bundles it
refuses."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
from pathlib import Path

import pytest

from central.gateways.bundle import bundle_files, write_bundle
from central.gateways.command_signing import generate_signing_key, public_key_pem
from central.security.ca import CertificateAuthority
from central.security.ca_store import PkiStore
from edge.commands import load_public_key
from edge.provisioning import BundleError, apply_bundle, load_installed, validate_bundle
from protocols.provisioning import GATEWAY_CERT, GATEWAY_KEY, MANIFEST

BROKER = "mqtts://broker.example.cn:8883"


@pytest.fixture
def store(tmp_path: Path) -> PkiStore:
    return PkiStore.create(tmp_path / "pki")


def _bundle(store: PkiStore, path: Path, gateway: str = "gw-1", url: str = BROKER) -> Path:
    identity = store.issue_gateway("hallA", gateway)
    key = generate_signing_key()
    return write_bundle(path, identity, url, store.ca.cert, key, {"windows": 12})


def _tar(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.size else None)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(store: PkiStore, gateway: str = "gw-1") -> dict[str, bytes]:
    identity = store.issue_gateway("hallA", gateway)
    return bundle_files(identity, BROKER, store.ca.cert, generate_signing_key(), {})


def _rehash(files: dict[str, bytes]) -> dict[str, bytes]:
    """An attacker who edits a file and fixes the manifest's hash to match."""
    manifest = json.loads(files[MANIFEST])
    for name in manifest["files"]:
        manifest["files"][name]["sha256"] = hashlib.sha256(files[name]).hexdigest()
    return {**files, MANIFEST: json.dumps(manifest).encode()}


def test_bundle_installs_with_private_key_modes(store: PkiStore, tmp_path: Path) -> None:
    bundle = _bundle(store, tmp_path / "gw.tar.gz")
    assert _mode(bundle) == 0o600
    installed = apply_bundle(bundle, tmp_path / "etc")
    manifest = installed.manifest
    assert (manifest.hall, manifest.gateway, manifest.username) == (
        "hallA",
        "gw-1",
        "gw.hallA.gw-1",
    )
    assert manifest.config == {"windows": 12}
    assert installed.broker == ("mqtts", "broker.example.cn", 8883)
    assert _mode(installed.key_file) == 0o600
    assert _mode(installed.cert_file) == _mode(installed.ca_file) == 0o644
    assert _mode(installed.directory.resolve()) == 0o750
    assert (tmp_path / "etc" / "current").is_symlink()
    load_public_key(installed.command_key_file)
    assert load_installed(tmp_path / "etc").manifest == manifest


def test_a_new_bundle_replaces_the_identity_and_keeps_one_for_rollback(
    store: PkiStore, tmp_path: Path
) -> None:
    target = tmp_path / "etc"
    first = apply_bundle(_bundle(store, tmp_path / "1.tar.gz"), target)
    first_dir = first.directory.resolve()
    second = apply_bundle(_bundle(store, tmp_path / "2.tar.gz"), target)
    third = apply_bundle(_bundle(store, tmp_path / "3.tar.gz"), target)
    assert second.manifest.cert_serial != third.manifest.cert_serial
    assert load_installed(target).manifest.cert_serial == third.manifest.cert_serial
    kept = sorted(p.name for p in target.glob("identity-*"))
    assert kept == sorted(f"identity-{m.manifest.cert_serial}" for m in (second, third))
    assert not first_dir.exists()
    apply_bundle(_bundle(store, tmp_path / "3.tar.gz"), target)  # again: still whole


def test_directory_bundle(store: PkiStore, tmp_path: Path) -> None:
    bundle = _bundle(store, tmp_path / "bundle-dir")
    assert bundle.is_dir() and _mode(bundle / GATEWAY_KEY) == 0o600
    assert apply_bundle(bundle, tmp_path / "etc").manifest.gateway == "gw-1"


def test_damaged_file_is_refused_and_nothing_is_written(store: PkiStore, tmp_path: Path) -> None:
    files = _files(store)
    files[GATEWAY_CERT] = files[GATEWAY_CERT].replace(b"A", b"B", 1)
    with pytest.raises(BundleError, match="does not match the manifest"):
        apply_bundle(_tar(tmp_path / "b.tar.gz", files), tmp_path / "etc")
    assert not (tmp_path / "etc").exists()


def test_key_from_another_identity_is_refused(store: PkiStore) -> None:
    files = _files(store, "gw-1")
    files[GATEWAY_KEY] = _files(store, "gw-2")[GATEWAY_KEY]
    with pytest.raises(BundleError, match="does not belong"):
        validate_bundle(_rehash(files))


def test_certificate_from_another_ca_is_refused(store: PkiStore) -> None:
    files = _files(store)
    forged = CertificateAuthority.create("Impostor").issue_gateway("hallA", "gw-1")
    manifest = json.loads(files[MANIFEST])
    manifest["cert_serial"] = f"{forged.serial:x}"
    files.update(
        {
            GATEWAY_CERT: forged.cert_pem(),
            GATEWAY_KEY: forged.key_pem(),
            MANIFEST: json.dumps(manifest).encode(),
        }
    )
    with pytest.raises(BundleError, match="not signed by the bundled CA"):
        validate_bundle(_rehash(files))


def test_certificate_for_another_gateway_is_refused(store: PkiStore) -> None:
    files = _files(store)
    manifest = json.loads(files[MANIFEST])
    manifest["gateway"], manifest["username"] = "gw-2", "gw.hallA.gw-2"
    files[MANIFEST] = json.dumps(manifest).encode()
    with pytest.raises(BundleError, match=r"not issued to gw\.hallA\.gw-2"):
        validate_bundle(_rehash(files))


def test_plain_broker_needs_an_explicit_yes(store: PkiStore, tmp_path: Path) -> None:
    bundle = _bundle(store, tmp_path / "dev.tar.gz", url="mqtt://127.0.0.1:18830")
    with pytest.raises(BundleError, match="not TLS"):
        apply_bundle(bundle, tmp_path / "etc")
    assert apply_bundle(bundle, tmp_path / "etc", allow_plain=True).broker[0] == "mqtt"


def test_expired_certificate_is_refused(store: PkiStore, tmp_path: Path) -> None:
    import datetime as dt

    bundle = _bundle(store, tmp_path / "b.tar.gz")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=6 * 365)
    with pytest.raises(BundleError, match="expired"):
        apply_bundle(bundle, tmp_path / "etc", now=later)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("../evil", tarfile.REGTYPE),
        ("/etc/passwd", tarfile.REGTYPE),
        ("ca.crt", tarfile.SYMTYPE),
        ("notes.txt", tarfile.REGTYPE),
        ("sub", tarfile.DIRTYPE),
    ],
)
def test_hostile_archive_members_are_refused(
    store: PkiStore, tmp_path: Path, name: str, kind: bytes
) -> None:
    files = _files(store)
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/shadow"
        files.pop("ca.crt")
    with pytest.raises(BundleError):
        apply_bundle(_tar(tmp_path / "b.tar.gz", files, [info]), tmp_path / "etc")
    assert not (tmp_path / "etc").exists()


def test_garbage_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(BundleError):
        apply_bundle(junk, tmp_path / "etc")
    missing = _tar(tmp_path / "empty.tar.gz", {})
    with pytest.raises(BundleError, match="incomplete"):
        apply_bundle(missing, tmp_path / "etc")


def test_public_key_in_bundle_is_centrals(store: PkiStore, tmp_path: Path) -> None:
    key = generate_signing_key()
    identity = store.issue_gateway("hallA", "gw-1")
    bundle = write_bundle(
        tmp_path / "b.tar.gz", identity, BROKER, store.ca.cert, public_key_pem(key)
    )
    installed = apply_bundle(bundle, tmp_path / "etc")
    assert installed.command_key_file.read_bytes() == public_key_pem(key)

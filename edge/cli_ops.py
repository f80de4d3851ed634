"""hallwatch-edge for technicians: ``provision apply``, ``selftest``, ``ports``."""

from __future__ import annotations

import asyncio
import glob
import grp
import os
import pwd
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from edge.cli_config import load_config
from edge.config import GatewayConfig
from edge.provisioning import BundleError, InstalledBundle, apply_bundle, manifest_summary
from hallkit.atomicfile import write_atomic
from hallkit.configtext import ConfigError, parse_yaml_model

app = typer.Typer()
provision_app = typer.Typer(
    help="Install a provisioning bundle from central.", no_args_is_help=True
)
app.add_typer(provision_app, name="provision")

DEFAULT_TARGET = Path("/etc/hallwatch")
DEFAULT_DATA = Path("/var/lib/hallwatch")
SERVICE_USER = "hallwatch"
CONFIG_NAME = "edge.yaml"
IDENTITY_DIR = "identity"


# -- provision apply ---------------------------------------------------------------------------


def _owner(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of the service user when installing as root, so the service can read."""
    if os.geteuid() != 0:
        return None
    name = user or SERVICE_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if user is not None:
            raise typer.BadParameter(f"no such user {name!r}") from None
        return None
    return entry.pw_uid, entry.pw_gid


def gateway_config(
    installed: InstalledBundle, existing: dict[str, Any] | None, data_dir: Path
) -> dict[str, Any]:
    """The gateway's configuration: the bundle's identity over whatever the file had
    (devices, windows, staff names stay as the technician set them)."""
    manifest = installed.manifest
    scheme, host, port = installed.broker
    extra = manifest.config
    data: dict[str, Any] = dict(existing or {})
    data["hall"] = manifest.hall
    data["gateway"] = manifest.gateway
    data.setdefault("data_dir", str(data_dir))
    broker = dict(data.get("broker") or {})
    broker.update(host=host, port=port)
    if scheme == "mqtts":
        broker["tls"] = {
            "ca": str(installed.ca_file),
            "cert": str(installed.cert_file),
            "key": str(installed.key_file),
        }
    else:
        broker.pop("tls", None)
    data["broker"] = broker
    journal = dict(data.get("journal") or {})
    floor = int((extra.get("journal") or {}).get("seq_floor", 0))
    journal["seq_floor"] = max(floor, int(journal.get("seq_floor", 0)))
    data["journal"] = journal
    commands = dict(data.get("commands") or {})
    commands["public_key"] = str(installed.command_key_file)
    version_floor = int((extra.get("commands") or {}).get("version_floor", 0))
    commands["version_floor"] = max(version_floor, int(commands.get("version_floor", 0)))
    data["commands"] = commands
    live = (extra.get("uplink") or {}).get("live_channel")
    if isinstance(live, bool):  # central's word on its broker (bundles before it: unchanged)
        data["uplink"] = {**(data.get("uplink") or {}), "live_channel": live}
    return data


def _identity_changed(existing: dict[str, Any] | None, installed: InstalledBundle) -> bool:
    if not existing:
        return False
    return (existing.get("hall"), existing.get("gateway")) != (
        installed.manifest.hall,
        installed.manifest.gateway,
    )


@provision_app.command("apply")
def provision_apply(
    bundle: Annotated[
        Path,
        typer.Argument(
            help="bundle from `hallwatch-central gateway provision` (.tar.gz or directory)"
        ),
    ],
    target: Annotated[Path, typer.Option(help="configuration directory")] = DEFAULT_TARGET,
    data_dir: Annotated[
        Path, typer.Option(help="data directory for a new configuration")
    ] = DEFAULT_DATA,
    user: Annotated[
        str | None,
        typer.Option(
            help="service user owning the identity (root only; default hallwatch if it exists)"
        ),
    ] = None,
    allow_plain: Annotated[
        bool, typer.Option(help="accept an mqtt:// broker (development)")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(help="re-provision for another hall or gateway id although a journal exists"),
    ] = False,
) -> None:
    """Install the identity from BUNDLE and write the gateway configuration."""
    config_path = target / CONFIG_NAME
    existing: dict[str, Any] | None = None
    if config_path.exists():
        loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        existing = loaded if isinstance(loaded, dict) else None
    owner = _owner(user)
    try:
        installed = apply_bundle(
            bundle, target / IDENTITY_DIR, allow_plain=allow_plain, owner=owner
        )
    except (BundleError, OSError) as exc:
        typer.echo(f"证书包无效，未做任何更改 / bundle refused, nothing changed: {exc}", err=True)
        raise typer.Exit(2) from None
    data = gateway_config(installed, existing, data_dir)
    journal = Path(data["data_dir"]) / "journal.db"
    if existing and _identity_changed(existing, installed) and journal.exists() and not force:
        typer.echo(
            f"{config_path} belongs to {existing.get('hall')}/{existing.get('gateway')} "
            f"and {journal} holds its events: sending them under a new identity would "
            "mix two gateways' data. Move the data directory away or use --force.",
            err=True,
        )
        raise typer.Exit(2)
    # Check what we write with the same model the service loads.
    text = (
        "# Written by `hallwatch-edge provision apply`; identity, broker and command key\n"
        "# come from the bundle, everything else is yours to edit.\n"
        + yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    )
    try:
        parse_yaml_model(GatewayConfig, text, str(config_path))
    except ConfigError as exc:
        typer.echo(f"配置错误 / the resulting configuration is invalid:\n{exc}", err=True)
        raise typer.Exit(2) from None
    target.mkdir(parents=True, exist_ok=True)
    # root:hallwatch 0640 (deploy/README.md)
    write_atomic(config_path, text.encode(), 0o640, group=None if owner is None else owner[1])
    typer.echo(f"已安装 / installed: {manifest_summary(installed.manifest)}")
    typer.echo(
        f"identity: {installed.directory}  config: {config_path}  "
        f"seq_floor: {data['journal']['seq_floor']}"
    )
    typer.echo(f"next: hallwatch-edge selftest -c {config_path}")


# -- selftest ----------------------------------------------------------------------------------


def _load(path: Path) -> tuple[GatewayConfig, int]:
    from edge.configstore import ConfigStore

    cfg = load_config(path)
    active = ConfigStore(cfg.data_dir).load_active(cfg)
    return (active.config, active.version) if active else (cfg, 0)


@app.command()
def selftest(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="gateway YAML config")
    ] = DEFAULT_TARGET / CONFIG_NAME,
    qm_wait: Annotated[float, typer.Option(help="seconds to wait for the queue machine")] = 35.0,
    central_wait: Annotated[float, typer.Option(help="seconds to wait for central's ack")] = 20.0,
    no_central: Annotated[
        bool, typer.Option("--no-central", help="skip the end-to-end check through central")
    ] = False,
) -> None:
    """Check ports, devices, clock, disk, journal, broker and central; exit 1 on any FAIL."""
    from rich.console import Console
    from rich.table import Table

    from edge.selftest import SelfTestOptions, Status, passed, run_selftest

    cfg, version = _load(config)
    console = Console(highlight=False)
    console.print(
        f"网关自检 / self-test: {cfg.hall}/{cfg.gateway}"
        + (f" (remote config v{version})" if version else "")
    )
    options = SelfTestOptions(
        qm_wait_s=qm_wait, central_wait_s=central_wait, skip_central=no_central
    )
    checks = asyncio.run(run_selftest(cfg, options))
    table = Table("检查 check", "结果 result", "说明 detail")
    colour = {Status.PASS: "green", Status.FAIL: "bold red", Status.SKIP: "yellow"}
    for check in checks:
        table.add_row(check.name, f"[{colour[check.status]}]{check.status}[/]", check.detail)
    console.print(table)
    verdict = passed(checks)
    console.print("通过 / PASS" if verdict else "未通过 / FAIL")
    raise typer.Exit(0 if verdict else 1)


# -- ports -------------------------------------------------------------------------------------


def _addresses(text: str) -> list[int]:
    """``0x81-0xFE`` or ``0x81,0x82`` (the FF 68 bus range is 0x81–0xFE)."""
    found: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        start = int(low, 0)
        end = int(high, 0) if high else start
        if not 0x81 <= start <= end <= 0xFE:
            raise typer.BadParameter(f"{part!r} is outside 0x81–0xFE")
        found += range(start, end + 1)
    return found


def _by_id() -> dict[str, list[str]]:
    """Device → its stable /dev/serial/by-id names (survive re-plugging; use those)."""
    links: dict[str, list[str]] = {}
    for link in sorted(glob.glob("/dev/serial/by-id/*")):
        links.setdefault(os.path.realpath(link), []).append(link)
    return links


@app.command()
def ports(
    probe: Annotated[
        bool,
        typer.Option(
            "--probe", help="poll evaluator addresses on each port (stop the service first)"
        ),
    ] = False,
    port: Annotated[
        list[str] | None, typer.Option("--port", help="also this device (repeat)")
    ] = None,
    addresses: Annotated[str, typer.Option(help="addresses to poll, e.g. 0x81-0x90")] = "0x81-0xFE",
    baudrate: Annotated[int, typer.Option(help="bus speed")] = 9600,
) -> None:
    """List serial ports; with --probe, which evaluator addresses answer on each."""
    from serial.tools import list_ports

    from firmware_bridges.ff68.driver import probe as probe_bus

    links = _by_id()
    rows: list[tuple[str, str, str]] = []
    for info in sorted(list_ports.comports(), key=lambda i: i.device):
        stable = ", ".join(links.get(os.path.realpath(info.device), []))
        rows.append((info.device, info.description or "", stable))
    for extra in port or []:
        if extra not in {r[0] for r in rows}:
            rows.append((extra, "(given)", ""))
    if not rows:
        typer.echo("没有串口 / no serial ports found (USB adapter plugged in? user in dialout?)")
        raise typer.Exit(1)
    wanted = _addresses(addresses) if probe else []
    access = _group_hint()
    for device, description, stable in rows:
        typer.echo(f"{device}\t{description}" + (f"\t{stable}" if stable else ""))
        if not probe:
            continue
        try:
            found = asyncio.run(probe_bus(device, wanted, baudrate=baudrate, retries=0))
        except (ConnectionError, OSError) as exc:
            typer.echo(f"  无法打开 / cannot open: {exc}{access}")
            continue
        listed = ", ".join(f"{a:#04x}" for a in found) or "none"
        typer.echo(f"  评价器 evaluators answering: {listed}")


def _group_hint() -> str:
    try:
        members = grp.getgrnam("dialout").gr_mem
    except KeyError:
        return ""
    me = pwd.getpwuid(os.geteuid()).pw_name
    return "" if os.geteuid() == 0 or me in members else " (add this user to group dialout)"

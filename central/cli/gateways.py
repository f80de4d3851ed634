"""hallwatch-central for operations: gateways, the broker, remote commands, backup/restore."""

from __future__ import annotations

import json
import os
import pwd
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine
from protocols.commands import CommandName

app = typer.Typer()
gateway_app = typer.Typer(help="The gateway registry and gateway identities.", no_args_is_help=True)
broker_app = typer.Typer(
    help="The broker's TLS setup, ACL and CRL; the province cluster's partitions.",
    no_args_is_help=True,
)
app.add_typer(gateway_app, name="gateway")
app.add_typer(broker_app, name="broker")

# -- gateways --------------------------------------------------------------------------------


@gateway_app.command("add")
def gateway_add(
    hall: Annotated[str, typer.Option(help="hall id")],
    gateway: Annotated[str, typer.Option(help="gateway id")],
    config: ConfigOption = None,
) -> None:
    """Register a gateway for a hall (without certificates; see `gateway provision`)."""
    from central.spine.registry import register

    cfg = load_config(config, logs="untouched")
    run_with_engine(cfg, lambda engine: register(engine, hall, gateway))
    typer.echo(f"registered gateway {gateway} for hall {hall}")


@gateway_app.command("provision")
def gateway_provision(
    hall: Annotated[str, typer.Option(help="hall id (大厅)")],
    name: Annotated[str, typer.Option(help="gateway id, unique across halls")],
    broker: Annotated[
        str | None,
        typer.Option(
            help="address gateways connect to, mqtts://host:8883; "
            "default: provisioning.broker_url in central's config"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="bundle path (.tar.gz or a directory)")] = None,
    config: ConfigOption = None,
) -> None:
    """Issue the gateway's key and certificate, register it, write its bundle, sync the broker.

    Provisioning an existing gateway id again (a replacement box) revokes the old
    certificate, and the new box continues the old one's sequence numbers.
    """
    from central.gateways.provision import bundle_broker_url, provision

    cfg = load_config(config, logs="untouched")
    try:
        url = bundle_broker_url(cfg, broker)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    target = out or Path(f"{hall}-{name}.tar.gz")
    done = run_with_engine(cfg, lambda engine: provision(engine, cfg, hall, name, target, url))
    typer.echo(f"已签发 / issued gw.{hall}.{name}, certificate {done.serial}")
    typer.echo(f"hall {done.hall}, gateway {done.gateway}, broker {url}")
    if done.revoked_serials:
        typer.echo(f"superseded and revoked: {', '.join(done.revoked_serials)}")
    typer.echo(f"bundle: {done.bundle} (contains the private key: carry it like a password)")
    typer.echo(f"seq_floor {done.seq_floor}, command version floor {done.version_floor}")
    typer.echo(f"on the gateway: hallwatch-edge provision apply {done.bundle.name}")


@gateway_app.command("revoke")
def gateway_revoke(
    gateway: Annotated[str, typer.Argument(help="gateway id")],
    config: ConfigOption = None,
) -> None:
    """Revoke a gateway: registry, certificates, broker ACL and CRL (it is cut off at once)."""
    from central.gateways.provision import revoke_gateway

    cfg = load_config(config, logs="untouched")
    hall, serials, policy = run_with_engine(cfg, lambda e: revoke_gateway(e, cfg, gateway))
    typer.echo(f"已吊销 / revoked {hall}/{gateway}; certificates {', '.join(serials) or 'none'}")
    typer.echo(
        f"broker: {len(policy.allowed)} gateways allowed, "
        f"{len(policy.revoked_serials)} serials in the CRL"
    )


@gateway_app.command("list")
def gateway_list(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    config: ConfigOption = None,
) -> None:
    """Every registered gateway with its progress and certificate; ``behind``: what it has
    journaled and central not yet committed, as of its last state message (a draining backlog
    shrinks from one listing to the next)."""
    from central.gateways.provision import list_gateways

    cfg = load_config(config, logs="untouched")
    rows = run_with_engine(cfg, lambda engine: list_gateways(engine, cfg))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "hall": r.hall,
                        "gateway": r.gateway,
                        "revoked": r.revoked_at is not None,
                        "committed_through": r.committed_through,
                        "journal_head": r.journal_head,
                        "behind": r.behind,
                        "oldest_unacked_utc": r.oldest_unacked_utc,
                        "online": r.online,
                        "cert_serial": r.cert_serial,
                        "cert_not_after": r.cert_not_after.isoformat()
                        if r.cert_not_after
                        else None,
                    }
                    for r in rows
                ],
                ensure_ascii=False,
                indent=1,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "大厅 hall",
        "网关 gateway",
        "状态 state",
        "committed",
        "待补传 behind",
        "最早 oldest",
        "证书 certificate",
        "有效期至 valid until",
    )
    for r in rows:
        state = "revoked" if r.revoked_at else ("online" if r.online else "offline")
        table.add_row(
            r.hall,
            r.gateway,
            state,
            str(r.committed_through),
            "-" if r.behind is None else str(r.behind),
            (r.oldest_unacked_utc or "-")[:19] if r.behind else "-",
            r.cert_serial or "-",
            r.cert_not_after.date().isoformat() if r.cert_not_after else "-",
        )
    Console(highlight=False).print(table)


@gateway_app.command("command")
def gateway_command(
    gateway: Annotated[str, typer.Argument(help="gateway id")],
    name: Annotated[
        str, typer.Argument(help="replay_from | reread_devices | apply_config | calibrate_camera")
    ],
    args: Annotated[str, typer.Option(help='arguments as JSON, e.g. {"seq": 1}')] = "{}",
    ttl_hours: Annotated[float, typer.Option(help="validity of the signed command")] = 24,
    config: ConfigOption = None,
) -> None:
    """Queue a signed command; a running aggregator publishes it (see the API for results)."""
    from central.gateways.command_queue import CommandError, queue_command

    cfg = load_config(config, logs="untouched")
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        typer.echo(f"--args is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    if name not in get_args(CommandName):
        typer.echo(f"unknown command {name!r}", err=True)
        raise typer.Exit(2)

    async def go(engine: Any) -> Any:
        try:
            return await queue_command(
                engine,
                gateway,
                cast(Any, name),
                parsed,
                requested_by=f"cli:{_me()}",
                ttl=timedelta(hours=ttl_hours),
            )
        except CommandError as exc:
            raise ValueError(str(exc)) from None

    queued = run_with_engine(cfg, go)
    typer.echo(f"queued {name} v{queued.version} for {queued.hall}/{gateway} (id {queued.id})")


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


# -- broker ----------------------------------------------------------------------------------


@broker_app.command("sync")
def broker_sync(config: ConfigOption = None) -> None:
    """Write the CRL and the ACL from the CA and the registry, then reload the broker."""
    from central.gateways.provision import sync

    cfg = load_config(config, logs="untouched")
    policy = run_with_engine(cfg, lambda engine: sync(engine, cfg))
    typer.echo(
        f"acl and crl.pem written to {cfg.broker_dir}: {len(policy.allowed)} gateways "
        f"allowed, {len(policy.revoked_serials)} serials revoked"
    )


@broker_app.command("partitions")
def broker_partitions(config: ConfigOption = None) -> None:
    """The province broker's partitions (broker.kind rabbitmq): messages waiting in each (the
    lag behind the gateways) and the aggregators subscribed to it; then each live aggregator's
    lag: the partitions it consumes, what it holds delivered and not acknowledged, its last
    commit (from the heartbeats the aggregators send on the broker once a second)."""
    import asyncio

    from central.spine.amqp_share import describe
    from central.spine.amqp_view import broker_view
    from hallkit.clock import utc_now

    cfg = load_config(config, logs="untouched")
    if cfg.broker.kind != "rabbitmq" or cfg.broker.amqp is None:
        typer.echo("broker.kind is not rabbitmq: the stream has no partitions", err=True)
        raise typer.Exit(2)
    try:
        view = asyncio.run(broker_view(cfg.broker.amqp))
    except ConnectionError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"partitions on {view.node}:")
    for depth in view.depths:
        if depth.waiting is None:
            typer.echo(f"{depth.name}  not declared yet (no aggregator has connected)")
        else:
            typer.echo(f"{depth.name}  waiting {depth.waiting}  consumers {depth.consumers}")
    typer.echo(f"aggregators heard: {len(view.aggregators)}")
    for beat in view.aggregators:
        typer.echo(describe(beat, now=utc_now()))


@broker_app.command("setup")
def broker_setup(
    host: Annotated[
        list[str],
        typer.Option("--host", help="name or address gateways use for the broker (repeat)"),
    ],
    mosquitto_dir: Annotated[
        Path, typer.Option(help="the broker's configuration directory")
    ] = Path("/etc/mosquitto"),
    port: Annotated[int, typer.Option(help="TLS listener port")] = 8883,
    bind: Annotated[str, typer.Option(help="TLS listener address")] = "0.0.0.0",
    central_name: Annotated[str, typer.Option(help="this aggregator's broker name")] = "main",
    run_as: Annotated[str, typer.Option(help="user the broker runs as")] = "mosquitto",
    data_dir: Annotated[Path, typer.Option(help="broker persistence directory")] = Path(
        "/var/lib/mosquitto"
    ),
    log_dest: Annotated[str, typer.Option(help="broker log destination")] = "syslog",
    templates: Annotated[
        Path | None,
        typer.Option(
            help="deploy/mosquitto of the source tree (an installed package has no deploy/)"
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create the CA (once), the broker's and central's certificates, the broker's main
    configuration (mosquitto.conf, the original kept as mosquitto.conf.orig), ACL and CRL."""
    from central.gateways.provision import sync
    from central.security.broker_acl import DEPLOY_MOSQUITTO, TlsBrokerFiles, render_tls_config
    from central.security.ca import central_username, feed_name
    from central.security.ca_store import PkiStore
    from hallkit.atomicfile import write_public

    cfg = load_config(config, logs="untouched")
    store = PkiStore.open_or_create(cfg.pki_dir)
    certs = mosquitto_dir / "certs"
    server = store.issue_server(host)
    server.write(certs / "server.crt", certs / "server.key")
    write_public(certs / "ca.crt", store.ca.cert_pem())
    # one identity per MQTT client of central: the broker makes each certificate's name the
    # client id, and two clients sharing one would knock each other off
    client_dir = cfg.data_dir / "broker-client"
    usernames = []
    for name, file in ((central_name, "central"), (feed_name(central_name), "central-cases")):
        client = store.issue_central(name)
        client.write(client_dir / f"{file}.crt", client_dir / f"{file}.key")
        usernames.append(central_username(name))
    write_public(client_dir / "ca.crt", store.ca.cert_pem())
    for username in usernames:
        if username not in cfg.provisioning.central_users:
            cfg.provisioning.central_users.append(username)
    files = TlsBrokerFiles(
        ca=certs / "ca.crt",
        cert=certs / "server.crt",
        key=certs / "server.key",
        crl=cfg.broker_dir / "crl.pem",
        acl=cfg.broker_dir / "acl",
        data_dir=data_dir,
        conf_d=mosquitto_dir / "conf.d",
    )
    main = mosquitto_dir / "mosquitto.conf"
    if main.exists() and not (mosquitto_dir / "mosquitto.conf.orig").exists():
        write_public(mosquitto_dir / "mosquitto.conf.orig", main.read_bytes())
    write_public(
        main,
        render_tls_config(
            port,
            files,
            bind=bind,
            run_as=run_as,
            log_dest=log_dest,
            directory=templates or DEPLOY_MOSQUITTO,
        ).encode(),
    )
    files.conf_d.mkdir(parents=True, exist_ok=True)
    policy = run_with_engine(cfg, lambda engine: sync(engine, cfg, store))
    if os.geteuid() == 0:  # the broker reads its key after dropping to its own user
        try:
            broker_user = pwd.getpwnam(run_as)
        except KeyError:
            broker_user = None
        if broker_user is not None:
            os.chown(certs, broker_user.pw_uid, broker_user.pw_gid)
            os.chmod(certs, 0o700)
            for path in certs.iterdir():
                os.chown(path, broker_user.pw_uid, broker_user.pw_gid)
    typer.echo(f"broker config: {main} (TLS on {bind}:{port})")
    typer.echo(
        f"central's broker identities ({', '.join(usernames)}): {client_dir} "
        "(central.crt: broker.tls, central-cases.crt: broker.feed_tls)"
    )
    typer.echo(
        f"CA: {store.ca_cert_path}; ACL/CRL: {cfg.broker_dir} ({len(policy.allowed)} gateways)"
    )


# -- backup and restore ----------------------------------------------------------------------


@app.command("backup")
def backup_cmd(
    out: Annotated[Path, typer.Argument(help="backup file to write (.tar)")],
    config: ConfigOption = None,
) -> None:
    """Back up the database (online), the CA and the command signing key into OUT."""
    from central.records.backup import BackupError, backup

    cfg = load_config(config, logs="untouched")
    try:
        info = backup(cfg, out)
    except BackupError as exc:
        typer.echo(f"备份失败 / backup failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"已备份 / backed up {info.database} database (schema {info.revision}) and "
        f"{len(info.members) - 1} files to {out}"
    )


@app.command("restore")
def restore_cmd(
    source: Annotated[Path, typer.Argument(help="backup file from `hallwatch-central backup`")],
    force: Annotated[
        bool,
        typer.Option(help="write over a database that holds data, and over an existing CA and key"),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Restore a backup; refuses a non-empty database without --force."""
    from central.records.backup import BackupError, restore

    cfg = load_config(config, logs="untouched")
    try:
        manifest = restore(cfg, source, force=force)
    except BackupError as exc:
        typer.echo(f"恢复失败 / restore refused: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"已恢复 / restored {manifest['database']} database (schema "
        f"{manifest['revision']}) from {source}, made {manifest['created_utc']}"
    )
    typer.echo(
        "gateways may hold events newer than this backup: send each one "
        "`hallwatch-central gateway command GW replay_from --args '{\"seq\": N}'` "
        "with N = its committed_through + 1 (`gateway list`)"
    )

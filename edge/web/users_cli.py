"""hallwatch-edge user …: the hall page's local accounts, managed on the gateway."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from edge.cli_config import ConfigOption, load_config
from edge.web.accounts import AccountStore, Role
from hallkit.login.accounts import AccountError

users = typer.Typer(
    help="大厅看板账号 / hall page accounts (local to this gateway).", no_args_is_help=True
)


def _store(config: Path) -> AccountStore:
    return AccountStore.in_data_dir(load_config(config).data_dir)


@users.command("add")
def add(
    name: Annotated[str, typer.Argument(help="user name, e.g. dating-admin")],
    config: ConfigOption,
    role: Annotated[Role, typer.Option(help="viewer: read-only (default); admin")] = Role.VIEWER,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="read the password from the first line of stdin"),
    ] = False,
) -> None:
    """Create an account, or set a new password (and role) for an existing one."""
    store = _store(config)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("密码 / password", hide_input=True, confirmation_prompt=True)
    try:
        created = store.set_password(name, password, role)
    except AccountError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    verb = "已创建 / created" if created else "已更新 / updated"
    typer.echo(f"{verb}: {name} ({role.value}); {store.path}")


@users.command("remove")
def remove(name: Annotated[str, typer.Argument()], config: ConfigOption) -> None:
    """Remove an account; its open sessions end at their next request."""
    if not _store(config).remove(name):
        typer.echo(f"没有此账号 / no such account: {name}", err=True)
        raise typer.Exit(1)
    typer.echo(f"已删除 / removed: {name}")


@users.command("list")
def list_accounts(config: ConfigOption) -> None:
    """The accounts and their roles (never the hashes)."""
    for account in sorted(_store(config).accounts().values(), key=lambda a: a.name):
        typer.echo(f"{account.name}\t{account.role.value}\t{account.created_utc}")

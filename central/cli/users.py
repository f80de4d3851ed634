"""hallwatch-central user add|passwd|disable|enable|list: dashboard login accounts."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

app = typer.Typer()
user_app = typer.Typer(help="监察看板账号 / dashboard login accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from the first line of stdin")
]
T = TypeVar("T")


def _run(config: Path | None, job: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    from hallkit.login.accounts import AccountError

    return run_with_engine(load_config(config), job, refused=(AccountError,))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("密码 / password", hide_input=True, confirmation_prompt=True))


@user_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="login name, e.g. jiancha-wang")],
    role: Annotated[
        str, typer.Option(help="supervisor | department_leader | hall_manager | technician")
    ],
    hall: Annotated[str | None, typer.Option(help="hall id (hall_manager)")] = None,
    department: Annotated[
        str | None, typer.Option(help="department (department_leader), as the cases name it")
    ] = None,
    password_stdin: PasswordStdin = False,
    config: ConfigOption = None,
) -> None:
    """Create a dashboard account (password from a prompt or --password-stdin)."""
    from central.security import accounts
    from central.security.accounts import Account
    from central.security.known_places import check_scope_exists
    from central.security.tokens import Role
    from hallkit.login.accounts import AccountError, check_name

    try:
        role_value = Role(role)
    except ValueError:
        typer.echo(
            f"未知角色 / unknown role {role!r}; one of: {', '.join(r.value for r in Role)}",
            err=True,
        )
        raise typer.Exit(2) from None
    try:
        check_name(name)
        accounts.check_scope(role_value, hall, department)
    except AccountError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    password = _password(password_stdin)

    async def add_known(engine: AsyncEngine) -> Account:
        await check_scope_exists(engine, hall, department)
        return await accounts.add(
            engine, name, password, role_value, hall=hall, department=department
        )

    account = _run(config, add_known)
    scope = account.hall or account.department or "全部 / all halls"
    typer.echo(f"已创建 / created: {account.name} ({account.role.value}, {scope})")


@user_app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument()],
    password_stdin: PasswordStdin = False,
    config: ConfigOption = None,
) -> None:
    """Set a new password; the account's open sessions end at their next request."""
    from central.security import accounts

    password = _password(password_stdin)
    _run(config, lambda engine: accounts.set_password(engine, name, password))
    typer.echo(f"已更新密码 / password changed: {name}")


@user_app.command("disable")
def disable(name: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Disable an account (kept for the record); its sessions end at their next request."""
    from central.security import accounts

    _run(config, lambda engine: accounts.set_disabled(engine, name, True))
    typer.echo(f"已停用 / disabled: {name}")


@user_app.command("enable")
def enable(name: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Enable a disabled account again."""
    from central.security import accounts

    _run(config, lambda engine: accounts.set_disabled(engine, name, False))
    typer.echo(f"已启用 / enabled: {name}")


@user_app.command("list")
def list_users(config: ConfigOption = None) -> None:
    """Accounts with role, scope and state (never the hashes)."""
    from central.security import accounts

    for a in _run(config, accounts.all_accounts):
        state = "disabled" if a.disabled else "enabled"
        typer.echo(f"{a.name}\t{a.role.value}\t{a.hall or a.department or '-'}\t{state}")

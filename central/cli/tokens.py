"""hallwatch-central token create|list|revoke: API bearer tokens."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from central.cli.common import ConfigOption, load_config, run_with_engine

if TYPE_CHECKING:
    from central.security.tokens import TokenInfo

app = typer.Typer()
token_app = typer.Typer(help="API 令牌 / API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    role: Annotated[
        str, typer.Option(help="supervisor | department_leader | hall_manager | technician")
    ],
    hall: Annotated[str | None, typer.Option(help="hall id (hall_manager)")] = None,
    department: Annotated[str | None, typer.Option(help="department (department_leader)")] = None,
    label: Annotated[str, typer.Option(help="who holds it")] = "",
    days: Annotated[int, typer.Option(help="days until it expires (1–3650)")] = 90,
    config: ConfigOption = None,
) -> None:
    """Create an API token and print it (it is stored only as a hash)."""
    from central.security.tokens import Role, create_token

    try:
        role_value = Role(role)
    except ValueError:
        typer.echo(f"unknown role {role!r}; one of: {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2) from None
    token = run_with_engine(
        load_config(config),
        lambda engine: create_token(
            engine,
            role_value,
            hall=hall,
            department=department,
            label=label,
            lifetime=dt.timedelta(days=days),
        ),
    )
    typer.echo(token)


@token_app.command("list")
def token_list(config: ConfigOption = None) -> None:
    """Every token: id, role, scope, holder, created, expires, state (never the token)."""
    from central.security.tokens import list_tokens

    now = dt.datetime.now(dt.UTC)
    for info in run_with_engine(load_config(config), list_tokens):
        typer.echo(_line(info, now))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="the id from `token list` (or the token)")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token at once: every request with it is refused from now on."""
    from central.security.tokens import revoke_token

    info = run_with_engine(load_config(config), lambda engine: revoke_token(engine, token_id))
    typer.echo(f"已吊销 / revoked: {_line(info, dt.datetime.now(dt.UTC))}")


def _line(info: TokenInfo, now: dt.datetime) -> str:
    scope = info.hall or info.department or "*"
    expires = info.expires_at.strftime("%Y-%m-%d") if info.expires_at else "never"
    return (
        f"{info.id}  {info.role.value:<17} {scope:<12} {info.label or '-':<20} "
        f"{info.created_at:%Y-%m-%d}  expires {expires}  {info.state(now)}"
    )

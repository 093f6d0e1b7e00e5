"""`visionline api token ...`: API tokens for operators and integrations."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from visionline.db import make_engine
from visionline.settings import CommonSettings
from visionline.tokens import ROLES, create_token, list_tokens, revoke_token

app = typer.Typer(help="The operator API (services/api).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: viewer, operator or admin.", no_args_is_help=True)
app.add_typer(token_app, name="token")
console = Console()


def _engine():
    return make_engine(CommonSettings().database_url)


@token_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what uses it (recorded in the audit log).")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "viewer",
) -> None:
    """Make a token and print it: the only time it is shown."""
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    print(create_token(_engine(), name, role, created_by="cli"))  # type: ignore[arg-type]


@token_app.command("list")
def list_command() -> None:
    """Tokens (never their secrets)."""
    table = Table("token id", "name", "role", "created", "last used", "revoked")
    for row in list_tokens(_engine()):
        table.add_row(
            row.token_id,
            row.name,
            row.role,
            f"{row.created_at:%Y-%m-%d %H:%M}",
            f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "",
            f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "",
        )
    console.print(table)


@token_app.command("revoke")
def revoke(token_id: str) -> None:
    """Revoke a token by its id (the part after ``vl_``)."""
    if not revoke_token(_engine(), token_id):
        console.print(f"no active token {token_id}")
        raise typer.Exit(1)
    console.print(f"revoked {token_id}")

"""``flask kpsession ...``: user and purge commands for operators and cron."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

import click
from flask import current_app
from flask.cli import AppGroup

from .errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from .extension import KPSession

kpsession_cli = AppGroup("kpsession", help="Manage flask-kpsession users and sessions.")


def _extension() -> KPSession:
    return cast("KPSession", current_app.extensions["kpsession"])


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@kpsession_cli.command("create-user")
@click.argument("name")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input.",
)
def create_user(name: str, password_stdin: bool) -> None:
    """Add a user NAME to the built-in users table."""
    password = _read_password(password_stdin)
    try:
        _extension().create_user(name, password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    except DatabaseUnavailableError as error:
        raise click.ClickException(f"database unavailable: {error}") from None
    click.echo(f"Created user {name!r}.")


@kpsession_cli.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def set_password(name: str, password_stdin: bool) -> None:
    """Replace the password of the built-in user NAME."""
    password = _read_password(password_stdin)
    try:
        found = _extension().set_password(name, password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if not found:
        raise click.ClickException(f"no user {name!r}")
    click.echo(f"Password of {name!r} changed.")


@kpsession_cli.command("purge")
@click.option(
    "--timeout",
    type=click.IntRange(min=0),
    default=None,
    help="Idle minutes after which a session goes (default: KPSESSION_TIMEOUT).",
)
def purge(timeout: int | None) -> None:
    """Delete timed-out sessions once (for cron, with the job switched off)."""
    try:
        count = _extension().delete_timed_out_sessions(timeout)
    except DatabaseUnavailableError as error:
        raise click.ClickException(f"database unavailable: {error}") from None
    click.echo(f"Deleted {count} timed-out session{'s' if count != 1 else ''}.")

"""``flask kpsession ...``: user and purge commands for operators and cron."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

import click
from flask import current_app
from flask.cli import AppGroup

from .clock import isoformat
from .errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from .extension import KPSession


class _CommandGroup(AppGroup):
    """The ``kpsession`` group: turns expected failures into one-line errors.

    An operator whose database is down, or who typed a bad value, gets a
    sentence and exit status 1, not a traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DatabaseUnavailableError as error:
            raise click.ClickException(f"database unavailable: {error}") from None
        except ValueError as error:
            raise click.ClickException(str(error)) from None


kpsession_cli = _CommandGroup(
    "kpsession", help="Manage flask-kpsession users and sessions."
)


def _printable(text: str) -> str:
    """Escape control characters, so that one session stays one line of columns."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    _extension().create_user(name, password)
    click.echo(f"Created user {name!r}.")


@kpsession_cli.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def set_password(name: str, password_stdin: bool) -> None:
    """Replace the password of the built-in user NAME."""
    password = _read_password(password_stdin)
    found = _extension().set_password(name, password)
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
    count = _extension().delete_timed_out_sessions(timeout)
    click.echo(f"Deleted {count} timed-out session{'s' if count != 1 else ''}.")


@kpsession_cli.command("sessions")
@click.option("--user", "uname", default=None, help="Only this user's sessions.")
def sessions(uname: str | None) -> None:
    """List live sessions, one line each, most recently used first.

    Columns (tab-separated): id, username, address, login time, last use,
    expiry, user agent. Control characters in a field are escaped (a tab shows
    as ``\\t``), so each line has exactly seven columns.
    """
    listed = _extension().list_sessions(uname)
    for item in listed:
        assert item.created_at and item.last_used_at and item.expires_at
        click.echo(
            "\t".join(
                [
                    item.id or "",
                    _printable(item.uname),
                    _printable(item.addr),
                    isoformat(item.created_at),
                    isoformat(item.last_used_at),
                    isoformat(item.expires_at),
                    _printable(item.user_agent),
                ]
            )
        )


@kpsession_cli.command("revoke")
@click.argument("session_id")
def revoke(session_id: str) -> None:
    """End the session SESSION_ID (its public id, as `sessions` lists it)."""
    if not _extension().revoke_session(session_id):
        raise click.ClickException(f"no session {session_id!r}")
    click.echo(f"Revoked session {session_id}.")


@kpsession_cli.command("revoke-user")
@click.argument("name")
def revoke_user(name: str) -> None:
    """End every session of user NAME."""
    count = _extension().revoke_user_sessions(name)
    click.echo(f"Revoked {count} session{'s' if count != 1 else ''} of {name!r}.")


@kpsession_cli.command("stats")
def stats() -> None:
    """Print how many sessions are stored and live, and for how many users."""
    figures = _extension().session_stats()
    oldest = isoformat(figures.oldest_login) if figures.oldest_login else "-"
    click.echo(f"stored sessions: {figures.stored}")
    click.echo(f"live sessions: {figures.live}")
    click.echo(f"users with a live session: {figures.users}")
    click.echo(f"oldest live login: {oldest}")

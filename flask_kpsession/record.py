"""The session record handed to callers: :class:`UserSession`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .config import MAX_USERNAME_LENGTH
from .timeouts import Boundary


@dataclass(eq=False)
class UserSession:
    """One login session: who (``uname``), from where (``addr``), and since when.

    Built as ``UserSession(addr, token, uname)`` before storing it, or returned by
    the extension's operations once stored, with the timestamps filled in. The
    plaintext ``token`` is known only to the code that created or presented it;
    it never comes back from the database and never shows in ``repr``.

    :param addr: client IP address the session is bound to (at most 45 characters).
    :param token: the bearer token, or ``None`` for a session listed by id.
    :param uname: the username the session belongs to.
    """

    addr: str
    token: str | None = field(repr=False)
    uname: str
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    id: str | None = None
    user_agent: str = ""


def session_from_row(row: Any, token: str | None, boundary: Boundary) -> UserSession:
    """Build the :class:`UserSession` of a stored row (or a cached copy of one).

    ``expires_at`` is computed at ``boundary``, so that every caller reports the
    same expiry for the same row and configuration; a row with an unreadable
    timestamp gets none.
    """
    created_at, last_used_at = row.created_at, row.last_used_at
    expires_at = None
    if created_at is not None and last_used_at is not None:
        expires_at = boundary.expires_at(created_at, last_used_at)
    return UserSession(
        addr=row.addr,
        token=token,
        uname=row.uname,
        created_at=created_at,
        last_used_at=last_used_at,
        expires_at=expires_at,
        id=row.public_id,
        user_agent=row.user_agent,
    )


def check_username(username: object) -> str:
    """Return ``username`` if it is acceptable, else raise ``ValueError``."""
    if not isinstance(username, str) or not username:
        raise ValueError("username must be a non-empty string")
    if len(username) > MAX_USERNAME_LENGTH:
        raise ValueError(f"username must be at most {MAX_USERNAME_LENGTH} characters")
    if not username.isprintable():
        raise ValueError("username must not contain control characters")
    return username

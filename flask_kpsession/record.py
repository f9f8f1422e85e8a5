"""The session record handed to callers: :class:`UserSession`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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

"""A user's sessions as a list: what is live where, and revoking it.

These operations find sessions by username or by public id, never by token: they
serve "where am I logged in" pages, "log out everywhere" buttons and operators,
who must be able to end a session without ever knowing its token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import ColumnElement, Connection, delete, func, select

from . import signals
from .database import Database
from .record import UserSession, session_from_row
from .timeouts import Boundary
from .tokens import TokenHasher, is_public_id, is_well_formed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionStats:
    """Counts for operators: what the table holds right now."""

    stored: int
    live: int
    users: int
    oldest_login: datetime | None


class SessionInventory:
    """Lists and revokes the sessions of users, by name or by public id."""

    def __init__(self, database: Database, hasher: TokenHasher) -> None:
        self._db = database
        self._hasher = hasher
        self._table = database.tables.sessions

    def _live(self, boundary: Boundary) -> list[ColumnElement[bool]]:
        c = self._table.c
        conditions: list[ColumnElement[bool]] = [
            c.last_used_at > boundary.idle_cutoff,
            c.last_used_at <= boundary.future_limit,
        ]
        if boundary.absolute_cutoff is not None:
            conditions.append(c.created_at > boundary.absolute_cutoff)
        return conditions

    def of_user(self, uname: str | None, boundary: Boundary) -> list[UserSession]:
        """Return the live sessions of ``uname`` (of everyone for ``None``).

        Most recently used first.
        """
        c = self._table.c
        conditions = self._live(boundary)
        if uname is not None:
            conditions.append(c.uname == uname)
        query = (
            select(c.public_id, c.uname, c.addr, c.user_agent, c.created_at)
            .add_columns(c.last_used_at)
            .where(*conditions)
            .order_by(c.last_used_at.desc())
        )
        rows = self._db.run(lambda conn: conn.execute(query).all())
        return [
            session_from_row(row, None, boundary)
            for row in rows
            if row.created_at is not None and row.last_used_at is not None
        ]

    def revoke(
        self, session_id: str, *, uname: str | None = None, reason: str = "revoked"
    ) -> bool:
        """Delete the session with this public id (of ``uname`` only, if given)."""
        if not is_public_id(session_id):
            return False
        c = self._table.c
        conditions = [c.public_id == session_id]
        if uname is not None:
            conditions.append(c.uname == uname)

        def work(conn: Connection) -> UserSession | None:
            row = conn.execute(
                select(c.uname, c.addr, c.user_agent).where(*conditions)
            ).first()
            if row is None:
                return None
            deleted = conn.execute(delete(self._table).where(*conditions)).rowcount
            if deleted != 1:
                return None
            return UserSession(
                row.addr, None, row.uname, id=session_id, user_agent=row.user_agent
            )

        removed = self._db.run(work)
        if removed is None:
            return False
        logger.info("session %s of %r revoked (%s)", session_id, removed.uname, reason)
        self._send_removed([removed], reason)
        return True

    def revoke_user(
        self, uname: str, *, keep_token: str | None = None, reason: str = "revoked"
    ) -> int:
        """Delete every session of ``uname`` except the one of ``keep_token``."""
        c = self._table.c
        conditions = [c.uname == uname]
        if keep_token is not None and is_well_formed(keep_token):
            conditions.extend(
                c.token_hash != digest for digest in self._hasher.candidates(keep_token)
            )

        def work(conn: Connection) -> tuple[int, list[UserSession]]:
            rows = conn.execute(
                select(c.public_id, c.addr, c.user_agent).where(*conditions)
            ).all()
            if not rows:
                return 0, []
            deleted = conn.execute(delete(self._table).where(*conditions)).rowcount
            return deleted, [
                UserSession(
                    row.addr, None, uname, id=row.public_id, user_agent=row.user_agent
                )
                for row in rows
            ]

        deleted, removed = self._db.run(work)
        if deleted:
            logger.info("%d sessions of %r revoked (%s)", deleted, uname, reason)
            self._send_removed(removed, reason)
        return deleted

    def _send_removed(self, sessions: list[UserSession], reason: str) -> None:
        if not signals.session_removed.receivers:
            return
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        for session in sessions:
            signals.session_removed.send(app, session=session, reason=reason)

    def stats(self, boundary: Boundary) -> SessionStats:
        """Count stored and live sessions, and users with a live session."""
        c = self._table.c

        def work(conn: Connection) -> SessionStats:
            stored = conn.execute(
                select(func.count()).select_from(self._table)
            ).scalar_one()
            live_filter = self._live(boundary)
            live, users, oldest = conn.execute(
                select(
                    func.count(),
                    func.count(c.uname.distinct()),
                    func.min(c.created_at),
                ).where(*live_filter)
            ).one()
            return SessionStats(stored, live, users, oldest)

        return self._db.run(work)

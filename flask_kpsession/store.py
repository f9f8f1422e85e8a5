"""The session operations, as SQL against ``kp_sessions``.

Each public method is one short transaction through :meth:`Database.run`. Rows
are found by the hash of the token (the primary key); the plaintext token never
reaches the database. Writes that must not bring a session back (the idle-clock
refresh) are conditional UPDATEs of a live row, never inserts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import signals
from .addresses import MAX_ADDRESS_LENGTH, address_matches, is_valid_address
from .cache import ValidationCache, cached_session, remember
from .clock import UTC, utcnow
from .config import Settings
from .database import Database
from .errors import DuplicateSessionError, NoSessionFoundError
from .record import UserSession, check_username, session_from_row
from .timeouts import Boundary, Verdict
from .tokens import TokenHasher, is_well_formed, new_public_id, new_token

logger = logging.getLogger(__name__)

#: A row of ``kp_sessions`` as selected by the store (Row's type parameters
#: differ between SQLAlchemy 2.0 and 2.1).
SessionRow = Any

_GENERATE_ATTEMPTS = 5
_REMOVAL_REASONS = {
    Verdict.IDLE: "idle",
    Verdict.ABSOLUTE: "absolute",
    Verdict.DAMAGED: "evicted",
}


@dataclass
class Lookup:
    """What one token amounts to for one address at one moment."""

    session: UserSession | None = None
    verdict: Verdict | None = None
    foreign: bool = False
    refreshed: bool = False
    removed: bool = False

    @property
    def live(self) -> bool:
        """Whether the token names a live session usable from this address."""
        return self.verdict is Verdict.LIVE and not self.foreign


class SessionStore:
    """Stores, finds, refreshes and deletes sessions of one app."""

    def __init__(
        self, database: Database, settings: Settings, hasher: TokenHasher
    ) -> None:
        self._db = database
        self._settings = settings
        self._hasher = hasher
        self._table = database.tables.sessions
        table = self._table
        self._columns = (
            table.c.token_hash,
            table.c.public_id,
            table.c.uname,
            table.c.addr,
            table.c.user_agent,
            table.c.created_at,
            table.c.last_used_at,
        )
        # Built once: the request path then skips statement construction and
        # reuses the compiled form and its cache key, memoised on the object.
        key = table.c.token_hash
        self._select_one = select(*self._columns).where(key == bindparam("digest"))
        self._select_any = select(*self._columns).where(
            key.in_(bindparam("digests", expanding=True))
        )
        refresh = (
            update(table)
            .where(key == bindparam("digest"))
            .where(table.c.last_used_at > bindparam("idle_cutoff"))
            .values(last_used_at=bindparam("now"))
        )
        self._refresh_idle = refresh
        self._refresh_both = refresh.where(
            table.c.created_at > bindparam("absolute_cutoff")
        )
        ttl = settings.validation_cache
        #: The opt-in per-process cache of the request path (``None``: off).
        self.cache = ValidationCache(ttl) if ttl else None

    def boundary(self, idle_timeout: timedelta | None = None) -> Boundary:
        """Return the timeout boundary for now, with the configured timeouts."""
        return Boundary.at(
            self._settings.idle_timeout if idle_timeout is None else idle_timeout,
            self._settings.absolute_timeout,
        )

    # -- reading -----------------------------------------------------------------

    def _find(self, conn: Connection, digests: list[bytes]) -> SessionRow | None:
        """Return the row stored under any of ``digests``, keyed by the first.

        A row found under a fallback key (stored before a secret-key rotation)
        is moved to the current key here, so callers address the row by
        ``digests[0]`` whichever key found it; ``row.token_hash`` keeps the key
        it was read under.
        """
        key = self._table.c.token_hash
        if len(digests) == 1:
            row = conn.execute(self._select_one, {"digest": digests[0]}).first()
        else:
            row = conn.execute(self._select_any, {"digests": digests}).first()
        if row is not None and row.token_hash != digests[0]:
            # Stored under a fallback secret key: move it to the current one.
            conn.execute(
                update(self._table)
                .where(key == row.token_hash)
                .values(token_hash=digests[0])
            )
        return row

    def _judge(self, row: SessionRow, boundary: Boundary) -> Verdict:
        if not row.uname or not is_valid_address(row.addr):
            return Verdict.DAMAGED
        return boundary.verdict(row.created_at, row.last_used_at)

    def _delete_row(self, conn: Connection, token_hash: bytes) -> int:
        result = conn.execute(
            delete(self._table).where(self._table.c.token_hash == token_hash)
        )
        return result.rowcount

    def lookup(
        self,
        addr: str,
        token: str,
        *,
        refresh_after: timedelta | None = None,
        delete_dead: bool = True,
        cached: bool = False,
    ) -> Lookup:
        """Find the session of ``token`` as seen from ``addr``, in one transaction.

        A timed-out or damaged row is deleted on the way (unless ``delete_dead``
        is false). A live row from a foreign address is left untouched. A live
        row from the right address is refreshed when its last refresh is at
        least ``refresh_after`` old (never, when ``None``).

        A transaction that only read is not committed: returning the connection
        ends it, so the common case costs the SELECT and one ROLLBACK.

        :param cached: may be answered from the validation cache, if enabled
            (the request hook's lookups only).
        """
        if not is_well_formed(token):
            return Lookup()
        boundary = self.boundary()
        digests = self._hasher.candidates(token)
        cache = self.cache if cached else None
        generation = 0
        if cache is not None:
            hit = cached_session(
                cache, digests[0], addr, token, boundary, self._settings.bind_ip
            )
            if hit is not None and not self._refresh_due(hit, boundary, refresh_after):
                return Lookup(session=hit, verdict=Verdict.LIVE)
            generation = cache.generation

        def work(conn: Connection) -> Lookup:
            row = self._find(conn, digests)
            if row is None:
                return Lookup()
            # A row found under a fallback key has just been moved to the current.
            wrote = row.token_hash != digests[0]
            found = self._settle(
                conn, row, digests[0], addr, token, boundary, refresh_after, delete_dead
            )
            if wrote or found.refreshed or found.removed:
                conn.commit()
            return found

        found = self._db.run(work, commit=False)
        if cache is not None:
            remember(
                cache,
                digests,
                found.session if found.live else None,
                generation,
                foreign=found.foreign,
            )
        self._announce(found, token, addr)
        return found

    def _settle(
        self,
        conn: Connection,
        row: SessionRow,
        key: bytes,
        addr: str,
        token: str,
        boundary: Boundary,
        refresh_after: timedelta | None,
        delete_dead: bool,
    ) -> Lookup:
        """Judge a found row for ``addr``: delete it if dead, refresh it if due.

        :param key: the digest the row is stored under now.
        """
        verdict = self._judge(row, boundary)
        session = session_from_row(row, token, boundary)
        if verdict is not Verdict.LIVE:
            removed = delete_dead and self._delete_row(conn, key) == 1
            return Lookup(session=session, verdict=verdict, removed=removed)

        if not address_matches(self._settings.bind_ip, row.addr, addr):
            return Lookup(session=session, verdict=verdict, foreign=True)

        if not self._refresh_due(session, boundary, refresh_after):
            return Lookup(session=session, verdict=verdict)
        if not self._refresh(conn, key, boundary):
            return Lookup()  # deleted by a logout or purge meanwhile
        session.last_used_at = boundary.now
        session.expires_at = boundary.expires_at(row.created_at, boundary.now)
        return Lookup(session=session, verdict=verdict, refreshed=True)

    @staticmethod
    def _refresh_due(
        session: UserSession | None,
        boundary: Boundary,
        refresh_after: timedelta | None,
    ) -> bool:
        if refresh_after is None or session is None or session.last_used_at is None:
            return False
        if not refresh_after:
            return True  # use_session: always write, even over a skewed clock
        return boundary.now - session.last_used_at >= refresh_after

    def _refresh(self, conn: Connection, token_hash: bytes, boundary: Boundary) -> bool:
        params = {
            "digest": token_hash,
            "idle_cutoff": boundary.idle_cutoff,
            "now": boundary.now,
        }
        absolute_cutoff = boundary.absolute_cutoff
        if absolute_cutoff is None:
            return conn.execute(self._refresh_idle, params).rowcount == 1
        params["absolute_cutoff"] = absolute_cutoff
        return conn.execute(self._refresh_both, params).rowcount == 1

    # -- the validation cache ----------------------------------------------------

    def forget_removed(
        self, sender: object, session: UserSession | None = None, **extra: object
    ) -> None:
        """Receiver of ``session_removed``: drop that session from the cache."""
        if self.cache is not None:
            self.cache.discard_session(session.id if session is not None else None)

    def forget_all(self, sender: object, **extra: object) -> None:
        """Receiver of ``purge_finished``: a purge may have removed any session."""
        if self.cache is not None:
            self.cache.clear()

    def _announce(self, found: Lookup, token: str, addr: str) -> None:
        if not (found.removed or found.foreign or found.refreshed):
            return  # the common case on the request path: nothing to tell
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        if found.removed and found.verdict is not None:
            reason = _REMOVAL_REASONS[found.verdict]
            logger.info(
                "session %s of %r ended: %s",
                self._hasher.fingerprint(token),
                found.session.uname if found.session else None,
                reason,
            )
            signals.session_removed.send(app, session=found.session, reason=reason)
        if found.foreign and found.session is not None:
            logger.warning(
                "session %s of %r presented from foreign address %s (bound to %s)",
                self._hasher.fingerprint(token),
                found.session.uname,
                addr,
                found.session.addr,
            )
            signals.address_mismatch.send(app, session=found.session, addr=addr)
        if found.refreshed:
            signals.session_refreshed.send(app, session=found.session)

    def get(self, addr: str, token: str) -> UserSession:
        """Return the live session of ``token`` for ``addr``.

        :raises NoSessionFoundError: unknown, foreign or timed out.
        """
        found = self.lookup(addr, token)
        if not found.live or found.session is None:
            raise NoSessionFoundError("no live session for this token and address")
        return found.session

    def exists(self, addr: str, token: str) -> bool:
        """Tell whether ``token`` names a live session for ``addr``; changes nothing."""
        return self.lookup(addr, token, delete_dead=False).live

    def use(self, addr: str, token: str) -> bool:
        """Refresh the idle clock of a live session; tell whether one was refreshed."""
        found = self.lookup(addr, token, refresh_after=timedelta(0), delete_dead=False)
        return found.refreshed

    # -- writing -----------------------------------------------------------------

    def add(self, session: UserSession) -> None:
        """Store ``session`` under the hash of its token, filling in its fields.

        :raises ValueError: the token, address or username is not acceptable.
        :raises DuplicateSessionError: a session with that token is stored already.
        """
        _check_new_session(session)
        assert session.token is not None
        now = utcnow()
        created_at = (session.created_at or now).astimezone(UTC)
        last_used_at = (session.last_used_at or created_at).astimezone(UTC)
        public_id = new_public_id()
        token_hash = self._hasher.digest(session.token)
        digests = self._hasher.candidates(session.token)

        def work(conn: Connection) -> None:
            if len(digests) > 1 and self._find(conn, digests):
                raise DuplicateSessionError("a session with this token exists")
            conn.execute(
                insert(self._table).values(
                    token_hash=token_hash,
                    public_id=public_id,
                    uname=session.uname,
                    addr=session.addr,
                    user_agent=session.user_agent[:255],
                    created_at=created_at,
                    last_used_at=last_used_at,
                )
            )

        try:
            self._db.run(work)
        except IntegrityError as error:
            raise DuplicateSessionError("a session with this token exists") from error

        session.created_at = created_at
        session.last_used_at = last_used_at
        session.expires_at = self.boundary().expires_at(created_at, last_used_at)
        session.id = public_id
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        signals.session_created.send(app, session=session)

    def generate(self, addr: str, uname: str, user_agent: str = "") -> UserSession:
        """Store a new session with a fresh random token, retrying on a collision."""
        for _ in range(_GENERATE_ATTEMPTS):
            session = UserSession(
                addr,
                new_token(self._settings.token_bytes),
                uname,
                user_agent=user_agent,
            )
            try:
                self.add(session)
            except DuplicateSessionError:
                logger.warning("token collision while generating a session; retrying")
                continue
            return session
        raise DuplicateSessionError("could not generate a unique token")

    def remove(self, addr: str, token: str, reason: str = "logout") -> bool:
        """Delete the session of ``token`` if it is bound to ``addr``.

        :return: whether a session was deleted.
        """
        if not is_well_formed(token):
            return False
        boundary = self.boundary()
        digests = self._hasher.candidates(token)

        def work(conn: Connection) -> tuple[UserSession | None, bool]:
            row = self._find(conn, digests)
            if row is None:
                return None, False
            session = session_from_row(row, token, boundary)
            if not address_matches(self._settings.bind_ip, row.addr, addr):
                return session, False
            return session, self._delete_row(conn, digests[0]) == 1

        session, deleted = self._db.run(work)
        if deleted and self.cache is not None:
            self.cache.discard(digests)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        if session is not None and not deleted:
            signals.address_mismatch.send(app, session=session, addr=addr)
        if session is not None and deleted:
            signals.session_removed.send(app, session=session, reason=reason)
        return deleted


def _check_new_session(session: UserSession) -> None:
    if not is_well_formed(session.token):
        raise ValueError(
            "token must be 32 to 256 URL-safe characters (letters, digits, - . _ ~)"
        )
    if not is_valid_address(session.addr):
        raise ValueError(
            f"addr must be an IP address of at most {MAX_ADDRESS_LENGTH} characters"
        )
    check_username(session.uname)
    for moment in (session.created_at, session.last_used_at):
        if moment is not None and moment.tzinfo is None:
            raise ValueError("created_at and last_used_at must be timezone-aware")

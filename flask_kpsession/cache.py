"""The opt-in validation cache: recently validated sessions, per process.

With ``KPSESSION_VALIDATION_CACHE`` set, the request hook remembers for that
long (at most a second) that a token named a live session, and serves repeat
requests without asking the database. What it may miss is bounded: a session
revoked by another process (another worker, another server, the CLI) keeps
working here until its entry is that old. Everything else is still checked on
every request: the timeouts against the clock, the address binding, and the
throttled refresh (a request whose refresh is due always goes to the database).
A logout, revocation or purge in this process drops the entries at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from .addresses import address_matches
from .config import BindPolicy
from .record import UserSession, session_from_row
from .timeouts import Boundary, Verdict

#: Most entries kept; older ones are dropped first. Bounds memory however many
#: sessions are stored: an entry lives a second at most anyway.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedRow:
    """The fields of a live ``kp_sessions`` row, as last read from the database."""

    public_id: str
    uname: str
    addr: str
    user_agent: str
    created_at: datetime
    last_used_at: datetime


class ValidationCache:
    """Token digests of recently validated sessions, with their rows.

    :param ttl: how long an entry may answer for the database.
    :param max_entries: bound on the number of entries.
    """

    def __init__(self, ttl: timedelta, max_entries: int = MAX_ENTRIES) -> None:
        self._ttl = ttl.total_seconds()
        self._max_entries = max_entries
        self._entries: dict[bytes, tuple[float, CachedRow]] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def generation(self) -> int:
        """A number that changes whenever an entry is discarded.

        Read before a database lookup and passed to :meth:`put`, it keeps a
        row read before a concurrent logout from being cached after it.
        """
        return self._generation

    def get(self, digest: bytes) -> CachedRow | None:
        """Return the row cached under ``digest`` if it is young enough."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if time.monotonic() - entry[0] >= self._ttl:
            return None
        return entry[1]

    def put(self, digest: bytes, row: CachedRow, generation: int) -> None:
        """Remember that ``digest`` named ``row`` when it was just read.

        :param generation: :attr:`generation` as read before the row was; when
            something was discarded since, the row may be stale and is dropped.
        """
        now = time.monotonic()
        with self._lock:
            if generation != self._generation:
                return
            self._entries.pop(digest, None)
            if len(self._entries) >= self._max_entries:
                self._evict(now)
            self._entries[digest] = (now, row)

    def _evict(self, now: float) -> None:
        stale = [key for key, (at, _) in self._entries.items() if now - at >= self._ttl]
        for key in stale:
            del self._entries[key]
        while len(self._entries) >= self._max_entries:
            # Entries are kept in insertion order: the first is the oldest.
            del self._entries[next(iter(self._entries))]

    def discard(self, digests: list[bytes], *, revoked: bool = True) -> None:
        """Forget the entries of one token (all its candidate digests).

        :param revoked: the session was just deleted here, so a row read before
            must not be cached after (see :attr:`generation`); ``False`` when
            the database merely said the token is not live.
        """
        with self._lock:
            if revoked:
                self._generation += 1
            for digest in digests:
                self._entries.pop(digest, None)

    def discard_session(self, public_id: str | None) -> None:
        """Forget the entry of the session with ``public_id`` (all, if unknown)."""
        with self._lock:
            self._generation += 1
            if public_id is None:
                self._entries.clear()
                return
            for key, (_, row) in list(self._entries.items()):
                if row.public_id == public_id:
                    del self._entries[key]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._generation += 1
            self._entries.clear()


def cached_session(
    cache: ValidationCache,
    digest: bytes,
    addr: str,
    token: str,
    boundary: Boundary,
    bind_ip: BindPolicy,
) -> UserSession | None:
    """Answer from the cache, or ``None`` when the database must be asked.

    Only a live session used from an address its binding accepts is answered
    here: anything else goes to the database, which logs and signals it.
    """
    row = cache.get(digest)
    if row is None:
        return None
    if boundary.verdict(row.created_at, row.last_used_at) is not Verdict.LIVE:
        return None
    if not address_matches(bind_ip, row.addr, addr):
        return None
    return session_from_row(row, token, boundary)


def remember(
    cache: ValidationCache,
    digests: list[bytes],
    live: UserSession | None,
    generation: int,
    *,
    foreign: bool,
) -> None:
    """Record what the database said of a token: a live session, or nothing.

    :param live: the live session the token names, ``None`` if it names none.
    :param foreign: the token was presented from an address it is not bound
        to; the owner's entry, if any, stays (this address never hits it).
    """
    if foreign:
        return
    if live is None:
        cache.discard(digests, revoked=False)
        return
    assert live.id is not None
    assert live.created_at is not None and live.last_used_at is not None
    row = CachedRow(
        public_id=live.id,
        uname=live.uname,
        addr=live.addr,
        user_agent=live.user_agent,
        created_at=live.created_at,
        last_used_at=live.last_used_at,
    )
    cache.put(digests[0], row, generation)

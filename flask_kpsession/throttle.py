"""Failed-login throttling, kept in the database so that it holds across workers.

Three limits apply to every login attempt, each "at most N failures within a
sliding window":

- per username and address (10 per 5 minutes by default): the guessing limit;
- per address, whatever the username (100 per 5 minutes): one address trying
  many names;
- per username, whatever the address (100 per hour): many addresses trying one
  name. An address from which that user logged in successfully within the
  trust period is exempt from this limit, so a stranger who exhausts it from
  elsewhere cannot lock the user out of the addresses the user really uses.
  There only the first two limits apply, and a stranger elsewhere cannot add
  to them.

IPv6 addresses count per /64, the block one subscriber usually holds, so that
walking through the addresses of one block earns no fresh allowance. A refused
attempt is answered before any password check and is not itself counted, so a
client that keeps hammering is not locked out for longer, and the table grows
by at most the limits.

Each failure is one row (a keyed hash of the username, the address key, the
time); the check reads, per limit, the N-th newest failure inside the window
through an index, which also says when the limit lifts (``Retry-After``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .addresses import parse_address
from .clock import utcnow
from .config import ThrottleSettings
from .database import Database
from .errors import LoginThrottledError

logger = logging.getLogger(__name__)

_USERNAME_LABEL = b"flask-kpsession login throttle v1"


def address_key(addr: str) -> str:
    """Return the key under which failures from ``addr`` are counted.

    An IPv4 address counts alone, an IPv6 address with its /64; anything that is
    not an IP address (a Unix socket, a misconfigured proxy) is hashed so that
    it still fits the ASCII column.
    """
    parsed = parse_address(addr)
    if parsed is None:
        digest = hashlib.sha256(addr.encode("utf-8", "surrogatepass")).hexdigest()
        return "?" + digest[:40]
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused, and for how long.

    :param scope: ``"pair"``, ``"address"`` or ``"user"``: the limit reached.
    :param retry_after: whole seconds until that limit lifts (at least 1).
    """

    scope: str
    retry_after: int


class LoginThrottle:
    """Counts failed logins and refuses attempts past the configured limits."""

    def __init__(
        self,
        database: Database,
        settings: ThrottleSettings,
        secret_keys: Iterable[str | bytes | None],
        batch_size: int = 2000,
    ) -> None:
        self._db = database
        self._settings = settings
        self._failures = database.tables.login_failures
        self._trust = database.tables.login_trust
        self._batch_size = batch_size
        # Only the current key: after a key rotation the counters start afresh,
        # which costs an attacker's throttle at most one window.
        current = next(
            (
                key.encode() if isinstance(key, str) else key
                for key in secret_keys
                if key
            ),
            b"",
        )
        self._username_key = hmac.new(current, _USERNAME_LABEL, hashlib.sha256).digest()

    @property
    def settings(self) -> ThrottleSettings:
        return self._settings

    def username_key(self, username: str) -> bytes:
        """Return the keyed hash under which ``username`` is counted."""
        data = username.encode("utf-8", "surrogatepass")
        return hmac.new(self._username_key, data, hashlib.sha256).digest()

    # -- checking ----------------------------------------------------------------

    def check(self, username: str, addr: str, now: datetime | None = None) -> None:
        """Refuse the attempt if a limit is reached; the answer ignores the password.

        :raises LoginThrottledError: with the seconds until the attempt may be
            checked again; the same whether the user exists or not.
        """
        refusal = self.refusal(username, addr, now)
        if refusal is not None:
            logger.warning(
                "login for %r from %s refused: %s limit reached, retry in %d s",
                username,
                addr,
                refusal.scope,
                refusal.retry_after,
            )
            raise LoginThrottledError(refusal.retry_after)

    def refusal(
        self, username: str, addr: str, now: datetime | None = None
    ) -> Refusal | None:
        """Return why an attempt for ``username`` from ``addr`` is refused, if it is."""
        if not self._settings.enabled:
            return None
        moment = now or utcnow()
        uname_key = self.username_key(username)
        addr_key = address_key(addr)
        settings = self._settings
        c = self._failures.c

        def work(conn: Connection) -> Refusal | None:
            until: dict[str, datetime | None] = {
                "pair": self._blocked_until(
                    conn,
                    (c.uname_key == uname_key, c.addr_key == addr_key),
                    settings.pair_limit,
                    settings.pair_window,
                    moment,
                ),
                "address": self._blocked_until(
                    conn,
                    (c.addr_key == addr_key,),
                    settings.address_limit,
                    settings.address_window,
                    moment,
                ),
                "user": self._blocked_until(
                    conn,
                    (c.uname_key == uname_key,),
                    settings.user_limit,
                    settings.user_window,
                    moment,
                ),
            }
            if until["user"] is not None and self._trusted(
                conn, uname_key, addr_key, moment
            ):
                until["user"] = None
            blocked = [(end, scope) for scope, end in until.items() if end is not None]
            if not blocked:
                return None
            end, scope = max(blocked)
            seconds = math.ceil((end - moment).total_seconds())
            return Refusal(scope, max(1, seconds))

        return self._db.run(work)

    def _blocked_until(
        self,
        conn: Connection,
        conditions: tuple[ColumnElement[bool], ...],
        limit: int,
        window: timedelta,
        now: datetime,
    ) -> datetime | None:
        # The limit-th newest failure in the window: while it is inside the
        # window the limit is reached, and it leaves the window first.
        c = self._failures.c
        query = (
            select(c.failed_at)
            .where(*conditions, c.failed_at > now - window)
            .order_by(c.failed_at.desc())
            .limit(1)
            .offset(limit - 1)
        )
        nth: datetime | None = conn.execute(query).scalar()
        return None if nth is None else nth + window

    def _trusted(
        self, conn: Connection, uname_key: bytes, addr_key: str, now: datetime
    ) -> bool:
        t = self._trust.c
        query = select(t.last_success_at).where(
            t.uname_key == uname_key,
            t.addr_key == addr_key,
            t.last_success_at > now - self._settings.trust_period,
        )
        return conn.execute(query).first() is not None

    # -- recording ---------------------------------------------------------------

    def record_failure(
        self, username: str, addr: str, now: datetime | None = None
    ) -> None:
        """Count one failed login for ``username`` from ``addr``."""
        if not self._settings.enabled:
            return
        values = {
            "uname_key": self.username_key(username),
            "addr_key": address_key(addr),
            "failed_at": now or utcnow(),
        }

        def work(conn: Connection) -> None:
            conn.execute(insert(self._failures).values(**values))

        self._db.run(work)

    def record_success(
        self, username: str, addr: str, now: datetime | None = None
    ) -> None:
        """Forget the pair's failures and trust ``addr`` for ``username``."""
        if not self._settings.enabled:
            return
        uname_key = self.username_key(username)
        addr_key = address_key(addr)
        moment = now or utcnow()
        f, t = self._failures, self._trust

        def refresh(conn: Connection) -> int:
            conn.execute(
                delete(f).where(f.c.uname_key == uname_key, f.c.addr_key == addr_key)
            )
            result = conn.execute(
                update(t)
                .where(t.c.uname_key == uname_key, t.c.addr_key == addr_key)
                .values(last_success_at=moment)
            )
            return result.rowcount

        def add(conn: Connection) -> None:
            conn.execute(
                insert(t).values(
                    uname_key=uname_key, addr_key=addr_key, last_success_at=moment
                )
            )

        if self._db.run(refresh) == 0:
            try:
                self._db.run(add)
            except IntegrityError:
                pass  # a concurrent login from the same address stored it first

    # -- cleaning up -------------------------------------------------------------

    def purge(self, now: datetime | None = None) -> int:
        """Delete failures older than every window and trust past its period.

        :return: the number of rows deleted from both tables.
        """
        moment = now or utcnow()
        failure_cutoff = moment - self._settings.longest_window
        trust_cutoff = moment - self._settings.trust_period
        f, t = self._failures, self._trust
        total = 0

        while True:

            def batch(conn: Connection) -> int:
                ids: list[Any] = list(
                    conn.execute(
                        select(f.c.id)
                        .where(f.c.failed_at <= failure_cutoff)
                        .order_by(f.c.failed_at)
                        .limit(self._batch_size)
                    ).scalars()
                )
                if not ids:
                    return 0
                return conn.execute(delete(f).where(f.c.id.in_(ids))).rowcount

            deleted = self._db.run(batch)
            total += deleted
            if deleted < self._batch_size:
                break

        def forget(conn: Connection) -> int:
            statement = delete(t).where(t.c.last_success_at <= trust_cutoff)
            return conn.execute(statement).rowcount

        total += self._db.run(forget)
        if total:
            logger.debug("login throttle: %d old rows deleted", total)
        return total

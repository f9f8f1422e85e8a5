"""The scheduled purge: one purge per interval across every process and host.

Every serving process runs the purge job, so that the purge goes on whichever
of them stay up. Before doing any work, a run claims its interval in the
database, in ``kp_purge_claims``: one row per schedule holds the start of the
next interval nobody has purged yet (``due_at``). The claim is one conditional
UPDATE that moves ``due_at`` to the next interval's start, so of all the
processes that find an interval due, exactly one succeeds; the others skip
quietly. Interval starts stay on a fixed grid, laid when the row is created so
that the creating process's runs fall mid-interval. Every process runs the job
once per interval, so each interval meets a run of each process, and the first
of them claims it: processes firing out of step never purge one after another
within one interval, and a process that wakes from a long pause runs one purge,
not one per missed interval.

The claim also takes a lease (``lease_until``), renewed while the purge walks its
batches and released when it ends: a purge that outlasts its interval is never
joined by a second one. A process that dies mid-purge leaves a lease that simply
runs out.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flask import Flask
from sqlalchemy import ColumnElement, Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import signals
from .clock import utcnow
from .database import Database
from .errors import DatabaseUnavailableError
from .purge import Purger
from .timeouts import Boundary

if TYPE_CHECKING:
    from .appstate import AppState

logger = logging.getLogger(__name__)

#: How long a claim stays held without renewal; a purge renews it after a third
#: of that, between batches.
LEASE = timedelta(seconds=60)
_RENEW_AFTER = LEASE.total_seconds() / 3


def _holder_name() -> str:
    """A name for one claim: host and process for people, a nonce for uniqueness."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{secrets.token_hex(4)}"


def next_start(due_at: datetime, now: datetime, interval: timedelta) -> datetime:
    """Return the first interval start on ``due_at``'s grid that lies after ``now``."""
    missed = (now - due_at) // interval if now >= due_at else -1
    return due_at + interval * (missed + 1)


@dataclass(frozen=True)
class Busy:
    """An interval is due but another purge still holds the lease."""

    holder: str
    claimed_at: datetime | None


class Claim:
    """The right to purge one interval, held until :meth:`release`."""

    def __init__(
        self, database: Database, name: str, holder: str, interval_start: datetime
    ) -> None:
        self._db = database
        self._table = database.tables.purge_claims
        self._name = name
        self.holder = holder
        #: The start of the interval this claim purges.
        self.interval_start = interval_start
        self._renewed = time.monotonic()

    def _mine(self) -> list[ColumnElement[bool]]:
        c = self._table.c
        return [c.name == self._name, c.holder == self.holder]

    def renew(self, force: bool = False) -> bool:
        """Extend the lease once a third of it is spent; tell whether it is ours.

        :param force: extend it now, however recently it was.
        """
        if not force and time.monotonic() - self._renewed < _RENEW_AFTER:
            return True

        def work(conn: Connection) -> bool:
            statement = (
                update(self._table)
                .where(*self._mine())
                .values(lease_until=utcnow() + LEASE)
            )
            return conn.execute(statement).rowcount == 1

        kept = self._db.run(work)
        self._renewed = time.monotonic()
        if not kept:
            logger.warning("purge claim %s was lost; stopping this purge", self.holder)
        return kept

    def release(self) -> None:
        """Let the next interval's purge start as soon as it is due.

        Without a database the lease is left to run out.
        """

        def work(conn: Connection) -> None:
            conn.execute(
                update(self._table).where(*self._mine()).values(lease_until=None)
            )

        try:
            self._db.run(work)
        except DatabaseUnavailableError as error:
            logger.debug("purge claim not released, it will run out: %s", error)


class PurgeClaims:
    """Hands out at most one :class:`Claim` per interval for one sessions table."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._table = database.tables.purge_claims
        self._name = f"purge:{database.tables.sessions.name}"[:64]

    def claim(self, interval: timedelta) -> Claim | Busy | None:
        """Try to claim the interval that is due now.

        :return: a :class:`Claim` to purge under; :class:`Busy` when an interval
            is due but the previous purge still runs; ``None`` when nothing is due
            (another process purged this interval).
        """
        try:
            return self._db.run(lambda conn: self._claim(conn, interval))
        except IntegrityError:
            # Another process created the row at the same moment; it claims.
            return None

    def _claim(self, conn: Connection, interval: timedelta) -> Claim | Busy | None:
        c = self._table.c
        now = utcnow()
        row = conn.execute(
            select(c.due_at, c.holder, c.lease_until, c.claimed_at).where(
                c.name == self._name
            )
        ).first()
        if row is None:
            # The grid is laid so that this process's runs fall mid-interval:
            # its runs, a few milliseconds late or early, then still land in
            # one interval each.
            due_at: datetime | None = now - interval / 2
            conn.execute(
                insert(self._table).values(name=self._name, due_at=due_at, holder="")
            )
        else:
            due_at = row.due_at

        # A start further ahead than one interval was set by a host whose clock
        # ran ahead, or under a longer interval: it is not honoured.
        too_far = now + interval
        if due_at is not None and now < due_at <= too_far:
            return None
        if row is not None and row.lease_until is not None and row.lease_until > now:
            return Busy(row.holder, row.claimed_at)

        start = now if due_at is None or due_at > too_far else due_at
        holder = _holder_name()
        claimed = conn.execute(
            update(self._table)
            .where(
                c.name == self._name,
                or_(c.due_at <= now, c.due_at > too_far),
                or_(c.lease_until.is_(None), c.lease_until <= now),
            )
            .values(
                due_at=next_start(start, now, interval),
                holder=holder,
                lease_until=now + LEASE,
                claimed_at=now,
            )
        ).rowcount
        if claimed != 1:
            return None
        interval_start = start + (now - start) // interval * interval
        return Claim(self._db, self._name, holder, interval_start)


class ScheduledPurge:
    """One run of the purge job: claim, purge in batches, release."""

    def __init__(
        self,
        database: Database,
        purger: Purger,
        boundary: Callable[[], Boundary],
        interval: timedelta,
    ) -> None:
        self._claims = PurgeClaims(database)
        self._purger = purger
        self._boundary = boundary
        self._interval = interval

    def run(self, keep_going: Callable[[], bool]) -> int | None:
        """Purge if this process wins the interval; return the count, else ``None``.

        :param keep_going: asked between batches; a false answer (the process
            is shutting down) ends the purge early, its lease released.
        :raises DatabaseUnavailableError: the database cannot be reached.
        """
        outcome = self._claims.claim(self._interval)
        if outcome is None:
            logger.debug("purge skipped: this interval is another process's")
            return None
        if isinstance(outcome, Busy):
            logger.warning(
                "purge skipped: the previous purge (%s, claimed at %s) is still "
                "running after a whole interval; the next run will catch up",
                outcome.holder,
                outcome.claimed_at,
            )
            return None

        claim = outcome
        logger.debug(
            "purge claimed for the interval from %s by %s",
            claim.interval_start,
            claim.holder,
        )
        stopped = False

        def proceed() -> bool:
            nonlocal stopped
            if not keep_going():
                stopped = True
                return False
            return claim.renew()

        try:
            count = self._purger.purge(self._boundary(), keep_going=proceed)
        finally:
            claim.release()
        if stopped:
            logger.info("purge stopped early by shutdown after %d sessions", count)
        return count


def purge_now(state: AppState, app: Flask, idle: timedelta | None) -> int:
    """Delete the sessions dead at ``idle`` (default: the idle timeout), unclaimed.

    Also drops login-throttle rows that no window counts any more. For callers
    that purge on their own schedule: the CLI, cron, ``delete_timed_out_sessions``.
    """
    count = state.purger.purge(state.sessions.boundary(idle))
    state.throttle.purge()
    signals.purge_finished.send(app, count=count)
    return count


def run_scheduled(
    state: AppState, app: Flask, verbose: bool, keep_going: Callable[[], bool]
) -> None:
    """One run of the purge job: claim the interval, purge, log; never raise.

    A failure is logged at WARNING with its reason, so that it shows with
    Python's default logging; the next run tries again.
    """
    job = ScheduledPurge(
        state.database,
        state.purger,
        state.sessions.boundary,
        state.settings.cleanup_interval,
    )
    with app.app_context():
        try:
            count = job.run(keep_going)
            if count is not None and keep_going():
                state.throttle.purge()
        except DatabaseUnavailableError as error:
            logger.warning("purge of timed-out sessions failed: %s", error)
            return
        except Exception:
            logger.exception("purge of timed-out sessions failed")
            return
        if count is None:
            return
        signals.purge_finished.send(app, count=count)
    if verbose:
        logger.info("purged %d timed-out sessions", count)

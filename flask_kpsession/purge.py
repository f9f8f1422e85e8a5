"""Deleting timed-out sessions in bounded, committed batches.

One large ``DELETE ... WHERE last_used_at < ?`` holds locks for the whole
statement; at MariaDB's default isolation it blocks refreshes of live sessions
until it ends. The purge instead walks an index range a batch at a time: it
reads the keys of the next batch, deletes exactly those rows (re-checking the
condition, so a row refreshed meanwhile survives) and commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, select

from .database import Database
from .timeouts import Boundary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pass:
    """One range of dead rows reachable through one index."""

    name: str
    order_by: Any
    condition: ColumnElement[bool]


class Purger:
    """Deletes the sessions that a :class:`Boundary` declares dead."""

    def __init__(self, database: Database, batch_size: int) -> None:
        self._db = database
        self._table = database.tables.sessions
        self._batch_size = batch_size

    def _passes(self, boundary: Boundary) -> list[_Pass]:
        c = self._table.c
        # A zero timeout means "everything": up to the future limit here, and the
        # rows beyond it go with the damaged ones below.
        idle_cutoff = (
            boundary.future_limit
            if boundary.idle_timeout == timedelta(0)
            else boundary.idle_cutoff
        )
        passes = [_Pass("idle", c.last_used_at, c.last_used_at <= idle_cutoff)]
        if boundary.absolute_cutoff is not None:
            passes.append(
                _Pass(
                    "absolute", c.created_at, c.created_at <= boundary.absolute_cutoff
                )
            )
        passes += [
            _Pass("future", c.last_used_at, c.last_used_at > boundary.future_limit),
            _Pass("future", c.created_at, c.created_at > boundary.future_limit),
            _Pass("nameless", c.uname, c.uname == ""),
        ]
        return passes

    def purge(
        self, boundary: Boundary, keep_going: Callable[[], bool] | None = None
    ) -> int:
        """Delete every row dead at ``boundary``; return how many were deleted.

        :param keep_going: asked before each batch; when it answers false the
            purge ends there, every batch so far committed.
        """
        proceed = keep_going or (lambda: True)
        total = 0
        for step in self._passes(boundary):
            deleted, finished = self._walk(step, proceed)
            total += deleted
            if not finished:
                break
        return total

    def _walk(self, step: _Pass, proceed: Callable[[], bool]) -> tuple[int, bool]:
        """Walk one pass; return the rows deleted and whether the pass finished."""
        key = self._table.c.token_hash
        deleted_total = 0
        low: Any = None

        while True:
            if not proceed():
                return deleted_total, False

            def read_batch(conn: Connection, low: Any = low) -> list[Any]:
                query = select(key, step.order_by).where(step.condition)
                if low is not None:
                    query = query.where(step.order_by >= low)
                query = query.order_by(step.order_by).limit(self._batch_size)
                return list(conn.execute(query).all())

            rows = self._db.run(read_batch)
            if not rows:
                break
            hashes = [row[0] for row in rows]

            def delete_batch(conn: Connection, hashes: list[bytes] = hashes) -> int:
                statement = delete(self._table).where(key.in_(hashes), step.condition)
                return conn.execute(statement).rowcount

            deleted = self._db.run(delete_batch)
            deleted_total += deleted
            logger.debug("purge pass %s: batch of %d deleted", step.name, deleted)

            next_low = rows[-1][1]
            if len(rows) < self._batch_size or (deleted == 0 and next_low == low):
                break
            low = next_low

        return deleted_total, True

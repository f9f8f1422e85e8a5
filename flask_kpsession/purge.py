"""Deleting timed-out sessions in bounded, committed batches.

One large ``DELETE ... WHERE last_used_at < ?`` holds locks for the whole
statement; at MariaDB's default isolation it blocks refreshes of live sessions
until it ends. The purge instead walks an index range a batch at a time: it
reads the keys of the next batch, deletes exactly those rows (re-checking the
condition, so a row refreshed meanwhile survives) and commits.

Deleting by primary key takes record locks on dead rows only, never a gap or
a live row. The batch size adapts so that each DELETE runs for about
:data:`TARGET_STATEMENT_SECONDS`: when the table outgrows the buffer pool a
row costs disk reads and batches shrink; when it is cached they grow, up to
``KPSESSION_CLEANUP_BATCH_SIZE``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, select

from .database import Database
from .timeouts import Boundary

logger = logging.getLogger(__name__)

#: How long one batch's DELETE should run: short enough that its locks and its
#: share of the server are gone before live requests notice, long enough that
#: the round trips around it do not matter.
TARGET_STATEMENT_SECONDS = 0.03
#: The first batch of a purge, before anything is known of the table.
_FIRST_BATCH = 50


class _BatchSize:
    """The size of the next batch, steered by how long the last DELETE took."""

    def __init__(self, largest: int) -> None:
        self.largest = largest
        self.value = min(largest, _FIRST_BATCH)

    def adjust(self, rows: int, seconds: float) -> None:
        if rows < self.value:
            return  # a short last batch says little about the rate
        factor = TARGET_STATEMENT_SECONDS / seconds if seconds > 0 else 2.0
        factor = min(2.0, max(0.25, factor))
        self.value = max(1, min(self.largest, int(self.value * factor)))


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
        size = _BatchSize(self._batch_size)

        while True:
            if not proceed():
                return deleted_total, False
            limit = size.value

            def batch(
                conn: Connection, low: Any = low, limit: int = limit
            ) -> tuple[list[Any], int, float]:
                # Read the keys and delete them in one transaction: one
                # connection and one commit per batch.
                query = select(key, step.order_by).where(step.condition)
                if low is not None:
                    query = query.where(step.order_by >= low)
                query = query.order_by(step.order_by).limit(limit)
                rows = list(conn.execute(query).all())
                if not rows:
                    return rows, 0, 0.0
                statement = delete(self._table).where(
                    key.in_([row[0] for row in rows]), step.condition
                )
                started = time.perf_counter()
                deleted = conn.execute(statement).rowcount
                seconds = time.perf_counter() - started
                conn.commit()
                return rows, deleted, seconds

            rows, deleted, seconds = self._db.run(batch, commit=False)
            if not rows:
                break
            deleted_total += deleted
            size.adjust(len(rows), seconds)
            logger.debug(
                "purge pass %s: batch of %d deleted in %.3f s",
                step.name,
                deleted,
                seconds,
            )

            next_low = rows[-1][1]
            if len(rows) < limit or (deleted == 0 and next_low == low):
                break
            low = next_low

        return deleted_total, True

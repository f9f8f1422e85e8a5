"""When a session is over: the one boundary shared by validation and the purge.

Both the request path and the purge build a :class:`Boundary` for "now" and ask
it; neither does its own date arithmetic, so a session idle just under the
timeout is live everywhere and one just over is dead everywhere.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import utcnow

#: How far in the future a stored timestamp may lie (clock skew between hosts)
#: before the row is treated as damaged.
FUTURE_TOLERANCE = timedelta(minutes=5)


class Verdict(enum.Enum):
    """What a stored row amounts to at a given moment."""

    LIVE = "live"
    IDLE = "idle"
    ABSOLUTE = "absolute"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class Boundary:
    """The cut-off instants for one moment and one pair of timeouts.

    A session is dead once ``last_used_at <= idle_cutoff`` (idle for at least the
    timeout) or ``created_at <= absolute_cutoff`` (past its lifetime).
    """

    now: datetime
    idle_timeout: timedelta
    absolute_timeout: timedelta | None

    @classmethod
    def at(
        cls,
        idle_timeout: timedelta,
        absolute_timeout: timedelta | None,
        now: datetime | None = None,
    ) -> Boundary:
        return cls(now or utcnow(), idle_timeout, absolute_timeout)

    @property
    def idle_cutoff(self) -> datetime:
        return self.now - self.idle_timeout

    @property
    def absolute_cutoff(self) -> datetime | None:
        if self.absolute_timeout is None:
            return None
        return self.now - self.absolute_timeout

    @property
    def future_limit(self) -> datetime:
        return self.now + FUTURE_TOLERANCE

    def verdict(
        self, created_at: datetime | None, last_used_at: datetime | None
    ) -> Verdict:
        """Judge a row by its two timestamps (``None`` for an unreadable one)."""
        if created_at is None or last_used_at is None:
            return Verdict.DAMAGED
        if created_at > self.future_limit or last_used_at > self.future_limit:
            return Verdict.DAMAGED
        absolute_cutoff = self.absolute_cutoff
        if absolute_cutoff is not None and created_at <= absolute_cutoff:
            return Verdict.ABSOLUTE
        if last_used_at <= self.idle_cutoff:
            return Verdict.IDLE
        return Verdict.LIVE

    def expires_at(self, created_at: datetime, last_used_at: datetime) -> datetime:
        """Return when a session with these timestamps stops being valid."""
        idle_end = last_used_at + self.idle_timeout
        if self.absolute_timeout is None:
            return idle_end
        return min(idle_end, created_at + self.absolute_timeout)

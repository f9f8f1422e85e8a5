"""The one source of "now" for the extension.

Every datetime that crosses a module boundary is timezone-aware UTC; naive values
exist only inside the column type that stores them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

UTC = timezone.utc


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime with microseconds."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC, always with microseconds.

    ``datetime.isoformat`` drops the fraction when it is zero, which makes the
    format vary between values; clients parse one shape more easily.
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def minutes(value: int | timedelta) -> timedelta:
    """Turn a configuration duration (minutes or a timedelta) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    return timedelta(minutes=value)

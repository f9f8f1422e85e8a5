"""Filling the benchmark database: sessions of flask-kpsession and of the peers.

Rows are written with plain multi-row INSERTs through PyMySQL, in random key
order as real logins leave them, so that indexes and the buffer pool see the
same shape as a table grown by traffic.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pymysql

SESSION_COLUMNS = (
    "token_hash",
    "public_id",
    "uname",
    "addr",
    "user_agent",
    "created_at",
    "last_used_at",
)
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) kpbench"


def utcnow_naive() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def kp_digest(secret_key: str, token: str) -> bytes:
    """The digest flask-kpsession stores for ``token`` under ``secret_key``.

    Computed here from the extension itself, so the benchmark cannot drift
    from what the extension looks up.
    """
    from flask_kpsession.tokens import TokenHasher

    return TokenHasher([secret_key]).digest(token)


def _chunks(
    rows: Iterator[tuple[object, ...]], size: int
) -> Iterator[list[tuple[object, ...]]]:
    chunk: list[tuple[object, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def insert_rows(
    conn: pymysql.connections.Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Iterator[tuple[object, ...]],
    chunk: int = 5000,
) -> int:
    """Insert ``rows`` in multi-row statements, one commit per chunk."""
    placeholders = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO `{table}` ({', '.join(columns)}) VALUES ({placeholders})"
    count = 0
    with conn.cursor() as cursor:
        for part in _chunks(rows, chunk):
            cursor.executemany(sql, part)
            count += len(part)
    return count


def dead_session_rows(
    count: int, idle: timedelta, rng: random.Random
) -> Iterator[tuple[object, ...]]:
    """Sessions idle for longer than ``idle``, spread over the previous 30 days."""
    now = utcnow_naive()
    for n in range(count):
        last_used = now - idle - timedelta(seconds=rng.uniform(60, 30 * 86400))
        created = last_used - timedelta(seconds=rng.uniform(0, 3600))
        yield (
            rng.randbytes(32),
            secrets.token_urlsafe(16),
            f"user{rng.randrange(50_000)}",
            f"10.{n % 250}.{(n >> 8) % 250}.{n % 200 + 1}",
            USER_AGENT,
            created,
            last_used,
        )


def live_session_rows(count: int, rng: random.Random) -> Iterator[tuple[object, ...]]:
    """Sessions used within the last hour (of nobody the benchmark logs in as)."""
    now = utcnow_naive()
    for n in range(count):
        last_used = now - timedelta(seconds=rng.uniform(0, 3600))
        created = last_used - timedelta(seconds=rng.uniform(0, 3600))
        yield (
            rng.randbytes(32),
            secrets.token_urlsafe(16),
            f"user{rng.randrange(50_000)}",
            f"10.{n % 250}.{(n >> 8) % 250}.{n % 200 + 1}",
            USER_AGENT,
            created,
            last_used,
        )


def known_session_rows(
    secret_key: str, count: int, addr: str, prefix: str = "kpbench"
) -> tuple[list[str], list[tuple[object, ...]]]:
    """Live sessions whose tokens the benchmark knows: the ones it presents."""
    now = utcnow_naive()
    tokens: list[str] = []
    rows: list[tuple[object, ...]] = []
    for n in range(count):
        token = secrets.token_urlsafe(32)
        tokens.append(token)
        rows.append(
            (
                kp_digest(secret_key, token),
                secrets.token_urlsafe(16),
                f"{prefix}{n}",
                addr,
                USER_AGENT,
                now - timedelta(minutes=5),
                now,
            )
        )
    return tokens, rows

"""The tables of flask-kpsession and the column types that make them portable.

The tables are defined on the host's ``SQLAlchemy.metadata``, so ``db.create_all()``
and migration tools see them like the app's own. Column types are chosen so that
the same rules hold on SQLite, MariaDB and PostgreSQL: exact (binary, no-pad)
usernames, microsecond UTC timestamps, and a fixed-size binary key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine

from .clock import UTC

SESSIONS_TABLE = "kp_sessions"
USERS_TABLE = "kp_users"
LOGIN_FAILURES_TABLE = "kp_login_failures"
LOGIN_TRUST_TABLE = "kp_login_trust"
PURGE_CLAIMS_TABLE = "kp_purge_claims"

_MYSQL = ("mysql", "mariadb")
_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime with microseconds on every backend.

    Values are stored naive in UTC, so the database's and the host's time zones
    never matter. A stored value that is not a valid datetime (MariaDB's zero
    date, a hand-written string on SQLite) reads back as ``None``, which the
    session logic treats as a damaged row rather than crashing on it.
    """

    impl = String(26)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(precision=6))
        # SQLite: fixed-width text, so string order is time order.
        return dialect.type_descriptor(String(26))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"expected an aware datetime, got {value!r}")
        naive = value.astimezone(UTC).replace(tzinfo=None)
        if dialect.name in _MYSQL or dialect.name == "postgresql":
            return naive
        return naive.strftime(_SQLITE_FORMAT)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value).replace(tzinfo=UTC)
            except ValueError:
                return None
        return None


def _token_hash_type() -> TypeEngine[bytes]:
    return (
        LargeBinary(32)
        .with_variant(mysql.BINARY(32), *_MYSQL)
        .with_variant(postgresql.BYTEA(), "postgresql")
    )


def _username_type() -> TypeEngine[str]:
    # utf8mb4_bin pads ('a' = 'a '); the no-pad binary collation matches exactly.
    exact = mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_nopad_bin")
    return String(255).with_variant(exact, *_MYSQL)


def _ascii_type(length: int) -> TypeEngine[str]:
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), *_MYSQL
    )


@dataclass(frozen=True)
class Tables:
    """The extension's tables on one ``MetaData``."""

    sessions: Table
    users: Table
    login_failures: Table
    login_trust: Table
    purge_claims: Table

    @property
    def all(self) -> tuple[Table, ...]:
        return (
            self.sessions,
            self.users,
            self.login_failures,
            self.login_trust,
            self.purge_claims,
        )


def define_tables(metadata: MetaData) -> Tables:
    """Define (or find, if already defined) the extension's tables on ``metadata``."""
    if SESSIONS_TABLE in metadata.tables:
        return Tables(
            sessions=metadata.tables[SESSIONS_TABLE],
            users=metadata.tables[USERS_TABLE],
            login_failures=metadata.tables[LOGIN_FAILURES_TABLE],
            login_trust=metadata.tables[LOGIN_TRUST_TABLE],
            purge_claims=metadata.tables[PURGE_CLAIMS_TABLE],
        )

    sessions = Table(
        SESSIONS_TABLE,
        metadata,
        Column("token_hash", _token_hash_type(), primary_key=True),
        Column("public_id", _ascii_type(32), nullable=False, unique=True),
        Column("uname", _username_type(), nullable=False),
        Column("addr", _ascii_type(45), nullable=False),
        Column("user_agent", String(255), nullable=False, server_default=""),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("last_used_at", UTCDateTime(), nullable=False),
        Index("ix_kp_sessions_last_used_at", "last_used_at"),
        Index("ix_kp_sessions_created_at", "created_at"),
        Index("ix_kp_sessions_uname", "uname", "last_used_at"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    users = Table(
        USERS_TABLE,
        metadata,
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("username", _username_type(), nullable=False, unique=True),
        Column("password_hash", String(255), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("password_changed_at", UTCDateTime(), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    login_failures, login_trust = _define_throttle_tables(metadata)
    return Tables(
        sessions=sessions,
        users=users,
        login_failures=login_failures,
        login_trust=login_trust,
        purge_claims=_define_purge_claims_table(metadata),
    )


def _define_throttle_tables(metadata: MetaData) -> tuple[Table, Table]:
    # Usernames are kept as keyed hashes: the table records names that were
    # tried, which include typos and passwords typed into the wrong field.
    failures = Table(
        LOGIN_FAILURES_TABLE,
        metadata,
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("uname_key", _token_hash_type(), nullable=False),
        Column("addr_key", _ascii_type(45), nullable=False),
        Column("failed_at", UTCDateTime(), nullable=False),
        Index("ix_kp_login_failures_pair", "uname_key", "addr_key", "failed_at"),
        Index("ix_kp_login_failures_addr", "addr_key", "failed_at"),
        Index("ix_kp_login_failures_uname", "uname_key", "failed_at"),
        Index("ix_kp_login_failures_failed_at", "failed_at"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    trust = Table(
        LOGIN_TRUST_TABLE,
        metadata,
        Column("uname_key", _token_hash_type(), primary_key=True),
        Column("addr_key", _ascii_type(45), primary_key=True),
        Column("last_success_at", UTCDateTime(), nullable=False),
        Index("ix_kp_login_trust_last_success_at", "last_success_at"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    return failures, trust


def _define_purge_claims_table(metadata: MetaData) -> Table:
    # One row per purge schedule: the start of the next interval nobody has
    # purged yet, and who is purging now (see cleanup.py).
    return Table(
        PURGE_CLAIMS_TABLE,
        metadata,
        Column("name", _ascii_type(64), primary_key=True),
        Column("due_at", UTCDateTime(), nullable=False),
        Column("holder", String(255), nullable=False, server_default=""),
        Column("lease_until", UTCDateTime(), nullable=True),
        Column("claimed_at", UTCDateTime(), nullable=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )

"""The built-in users table: argon2id password hashes in ``kp_users``.

Used unless the host app registers its own check with ``@kp.verify_password``.
An unknown username is checked against a dummy hash made with the same
parameters, so it costs the same hashing work as a wrong password and the
answer time does not tell which usernames exist.
"""

from __future__ import annotations

import logging
import threading

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from .clock import utcnow
from .config import Settings
from .database import Database
from .errors import KPSessionError
from .record import check_username

logger = logging.getLogger(__name__)


class UserExistsError(KPSessionError, ValueError):
    """A user with that exact username already exists."""


class UserStore:
    """Creates users and checks their passwords."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._db = database
        self._table = database.tables.users
        self._max_password = settings.max_password_length
        self.hasher = PasswordHasher(
            time_cost=settings.password_time_cost,
            memory_cost=settings.password_memory_cost,
            parallelism=settings.password_parallelism,
            type=Type.ID,
        )
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def _check_password(self, password: object) -> str:
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        if len(password) > self._max_password:
            raise ValueError(
                f"password must be at most {self._max_password} characters"
            )
        return password

    def _dummy(self) -> str:
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash("flask-kpsession dummy password")
            return self._dummy_hash

    def create(self, username: str, password: str) -> None:
        """Add a user.

        :raises ValueError: the username or password is not acceptable.
        :raises UserExistsError: the username is taken.
        """
        check_username(username)
        password_hash = self.hasher.hash(self._check_password(password))
        now = utcnow()

        def work(conn: Connection) -> None:
            conn.execute(
                insert(self._table).values(
                    username=username,
                    password_hash=password_hash,
                    created_at=now,
                    password_changed_at=now,
                )
            )

        try:
            self._db.run(work)
        except IntegrityError as error:
            raise UserExistsError(f"user {username!r} already exists") from error
        logger.info("user %r created", username)

    def set_password(self, username: str, password: str) -> bool:
        """Replace a user's password; return whether the user exists."""
        password_hash = self.hasher.hash(self._check_password(password))
        return self._store_hash(username, password_hash)

    def _store_hash(self, username: str, password_hash: str) -> bool:
        def work(conn: Connection) -> int:
            result = conn.execute(
                update(self._table)
                .where(self._table.c.username == username)
                .values(password_hash=password_hash, password_changed_at=utcnow())
            )
            return result.rowcount

        return self._db.run(work) == 1

    def exists(self, username: str) -> bool:
        """Tell whether a user with exactly this name exists."""
        return self._load_hash(username) is not None

    def _load_hash(self, username: str) -> str | None:
        def work(conn: Connection) -> str | None:
            query = select(self._table.c.password_hash).where(
                self._table.c.username == username
            )
            return conn.execute(query).scalar_one_or_none()

        return self._db.run(work)

    def verify(self, username: str, password: str) -> bool:
        """Tell whether ``password`` is the password of ``username``.

        Does the same hashing work whether the user exists or not, and re-hashes
        a matching password whose stored parameters are below the current ones.
        """
        # The dummy hash is made on the first check in a process, whichever user
        # it is for, so that this one-off cost gives nothing away either.
        dummy = self._dummy()
        stored = self._load_hash(username)
        if stored is None:
            self._verify_hash(dummy, password)
            return False
        if not self._verify_hash(stored, password):
            return False
        if self.hasher.check_needs_rehash(stored):
            self._store_hash(username, self.hasher.hash(password))
            logger.info("password hash of %r upgraded to current parameters", username)
        return True

    def _verify_hash(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

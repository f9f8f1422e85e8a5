"""Talking to the session database: engine set-up, table creation, outages.

Every statement of the extension runs through :meth:`Database.run`, which gives
one place to retry what is worth retrying (a pooled connection the server closed,
a deadlock, a busy SQLite file) and to turn an unreachable server into
:class:`DatabaseUnavailableError` instead of a stack trace.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, event, exc
from sqlalchemy.pool import SingletonThreadPool, StaticPool
from sqlalchemy.schema import CreateIndex, CreateTable

from .errors import DatabaseUnavailableError
from .models import Tables

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How many times one piece of work runs, at most, when it keeps failing in a
#: way that a rerun may well cure. A deadlock or a busy SQLite file clears up
#: within milliseconds. A lock wait timeout has already waited for
#: ``innodb_lock_wait_timeout``, so it earns one rerun only. A dropped
#: connection is rerun once on a fresh one: the pool discards every connection
#: older than the failure (a restarted server, an expired ``wait_timeout``), and
#: a second drop means an outage.
_DEADLOCK_RUNS = 5
_LOCK_WAIT_RUNS = 2
_DISCONNECT_RUNS = 2

_configured_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _mysql_code(error: exc.DBAPIError) -> int | None:
    args = getattr(error.orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _fault_kind(error: exc.DBAPIError) -> tuple[str, int] | None:
    """Name the transient fault behind ``error`` and its run limit, if it is one."""
    if error.connection_invalidated:
        return "disconnect", _DISCONNECT_RUNS
    code = _mysql_code(error)
    if code == 1213 or "database is locked" in str(error.orig):
        return "lock conflict", _DEADLOCK_RUNS
    if code == 1205:
        return "lock wait timeout", _LOCK_WAIT_RUNS
    return None


def is_retryable(error: exc.DBAPIError) -> bool:
    """Tell whether running the same work again may well succeed."""
    return _fault_kind(error) is not None


#: MariaDB/MySQL server errors that say the server cannot serve us right now
#: (too many connections, shut down, host blocked, access denied, database
#: missing, read-only, connection killed). Client errors (2000-2999) are all
#: about reaching the server. PyMySQL raises every other server error as an
#: OperationalError too, but those are faults in a statement, not an outage.
_MYSQL_OUTAGE_CODES = frozenset(
    {1040, 1041, 1042, 1043, 1044, 1045, 1049, 1053, 1077, 1078, 1079, 1080}
    | {1129, 1130, 1152, 1153, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161}
    | {1184, 1203, 1290, 1836, 1927, 4031}
)


def is_outage(error: Exception) -> bool:
    """Tell whether ``error`` means the database cannot be reached right now.

    A statement the server refuses (a MariaDB "illegal mix of collations", say)
    is a bug to surface, not an outage to wait out, even though PyMySQL raises
    it as an ``OperationalError`` too.
    """
    if isinstance(error, exc.TimeoutError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    code = _mysql_code(error)
    if code is None:
        return True  # SQLite, PostgreSQL, or a socket error without a server code
    return code in _MYSQL_OUTAGE_CODES or 2000 <= code < 3000


def _sqlite_pragmas(wal: bool) -> Callable[..., None]:
    def on_connect(dbapi_connection: object, connection_record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        try:
            cursor.execute("PRAGMA busy_timeout = 10000")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    return on_connect


class Database:
    """The extension's handle on one app's engine and tables."""

    def __init__(self, engine: Engine, tables: Tables, *, owns_engine: bool) -> None:
        self.engine = engine
        self.tables = tables
        self._tables_ready = False
        self._schema_lock = threading.Lock()

        if engine.dialect.name == "sqlite" and engine not in _configured_engines:
            event.listen(engine, "connect", _sqlite_pragmas(wal=owns_engine))
            _configured_engines.add(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def prepare(self) -> None:
        """Create missing tables at start-up, tolerating an unreachable server.

        The pool is disposed afterwards, so no connection opened here is
        inherited by worker processes forked later; except an in-memory SQLite
        database, which lives in its one pooled connection and would be lost
        with it (the host app's tables too).
        """
        try:
            self.ensure_tables()
        except DatabaseUnavailableError as error:
            logger.warning(
                "session tables not checked at start-up (%s); will retry on first use",
                error,
            )
        finally:
            if not isinstance(self.engine.pool, (StaticPool, SingletonThreadPool)):
                self.engine.dispose()

    def ensure_tables(self) -> None:
        """Create the tables if this process has not yet seen them exist.

        Until that has worked, every use tries again: the first request after
        an outage ends creates them, with no back-off that would prolong the
        outage for clients.
        """
        if self._tables_ready:
            return

        with self._schema_lock:
            if self._tables_ready:
                return
            self._run_once(self._create_tables)
            self._tables_ready = True

    def _create_tables(self, conn: Connection) -> None:
        tables = list(self.tables.all)
        if self.dialect in ("mysql", "mariadb"):
            # Serialise creation across processes: two workers checking then
            # creating at once would both see the table missing.
            conn.exec_driver_sql("SELECT GET_LOCK('flask_kpsession_schema', 60)")
            try:
                for table in tables:
                    table.create(conn, checkfirst=True)
            finally:
                conn.exec_driver_sql("SELECT RELEASE_LOCK('flask_kpsession_schema')")
            return
        if self.dialect == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7351946211)")
            for table in tables:
                table.create(conn, checkfirst=True)
            return
        for table in tables:
            conn.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                conn.execute(CreateIndex(index, if_not_exists=True))

    def run(self, work: Callable[[Connection], T], *, commit: bool = True) -> T:
        """Run ``work`` in one transaction and commit it, retrying transient faults.

        :param commit: ``False`` for work that commits by itself after a write.
            A transaction that only read is then ended by the connection's
            return to the pool: one ROLLBACK round trip, where a COMMIT would
            be followed by the pool's own reset (two).
        :raises DatabaseUnavailableError: the server cannot be reached.
        """
        self.ensure_tables()
        return self._run_once(work, commit)

    def _run_once(self, work: Callable[[Connection], T], commit: bool = True) -> T:
        runs: dict[str, int] = {}
        while True:
            try:
                with self.engine.connect() as conn:
                    result = work(conn)
                    if commit:
                        conn.commit()
                    return result
            except exc.DBAPIError as error:
                fault = _fault_kind(error)
                if fault is not None:
                    kind, limit = fault
                    runs[kind] = runs.get(kind, 1) + 1
                    if runs[kind] <= limit:
                        logger.debug("%s, running again: %s", kind, describe(error))
                        if kind != "disconnect":
                            # Growing, jittered pauses, so that the two sides
                            # of a deadlock do not meet again in step.
                            time.sleep(random.uniform(0.005, 0.02) * runs[kind])
                        continue
                if fault is not None or is_outage(error):
                    # A lock conflict that outlasted its reruns is the database
                    # too busy to answer now: a 503, never a 500 or a logout.
                    raise DatabaseUnavailableError(describe(error)) from error
                raise
            except exc.TimeoutError as error:
                raise DatabaseUnavailableError(describe(error)) from error


def describe(error: Exception) -> str:
    """A one-line reason for logs: the driver's message without SQL or parameters."""
    orig = getattr(error, "orig", None) or error
    return f"{type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else ''}"

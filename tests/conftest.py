"""Fixtures shared by the suite: one parametrised backend, an app factory, clients.

Every test that takes ``backend`` runs on SQLite and on MariaDB. MariaDB comes
from ``KPSESSION_TEST_MYSQL_URL`` (default: root on 127.0.0.1:3306, database
``kpsession_test``, which the suite creates). Where no MariaDB answers, those
tests are skipped, unless ``KPSESSION_TEST_REQUIRE_MYSQL=1`` (as in CI), which
turns an unreachable server into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
from flask import Flask
from flask.globals import _cv_app, _cv_request
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from flask_kpsession import KPSession

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/kpsession_test"
MYSQL_URL = os.environ.get("KPSESSION_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
MYSQL_DATABASE = make_url(MYSQL_URL).database or "kpsession_test"
REQUIRE_MYSQL = os.environ.get("KPSESSION_TEST_REQUIRE_MYSQL") == "1"

#: The cheapest argon2id parameters OWASP accepts: fast tests, real hashing.
FAST_PASSWORDS = {
    "KPSESSION_PASSWORD_TIME_COST": 2,
    "KPSESSION_PASSWORD_MEMORY_COST": 19 * 1024,
    "KPSESSION_PASSWORD_PARALLELISM": 1,
}

_mysql_problem: str | None = None
_mysql_checked = False


def mysql_connect(database: str | None = None) -> pymysql.connections.Connection:
    """Open a raw PyMySQL connection to the test server (no SQLAlchemy)."""
    url = make_url(MYSQL_URL)
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=database,
        autocommit=True,
        connect_timeout=5,
    )


def _prepare_mysql() -> str | None:
    """Create the test database once; return why MariaDB is unusable, if it is."""
    global _mysql_problem, _mysql_checked
    if _mysql_checked:
        return _mysql_problem
    _mysql_checked = True
    name = MYSQL_DATABASE
    try:
        conn = mysql_connect()
    except pymysql.MySQLError as error:
        _mysql_problem = f"MariaDB at {MYSQL_URL} does not answer: {error}"
        return _mysql_problem
    with conn:
        with conn.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE IF NOT EXISTS `{name}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
    return None


def mysql_url_for(database: str) -> str:
    """The test server's URL with another database name."""
    return (
        make_url(MYSQL_URL).set(database=database).render_as_string(hide_password=False)
    )


def _empty_mysql_tables() -> None:
    name = MYSQL_DATABASE
    with mysql_connect(name) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name LIKE 'kp\\_%%'",
            (name,),
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f"DELETE FROM `{table}`")


@dataclass(frozen=True)
class Backend:
    """A database the suite runs against."""

    name: str
    url: str

    @property
    def is_mysql(self) -> bool:
        return self.name == "mariadb"


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The database of one test: a fresh SQLite file, or the emptied MariaDB."""
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path / 'sessions.sqlite3'}")
    problem = _prepare_mysql()
    if problem is not None:
        if REQUIRE_MYSQL:
            pytest.fail(problem)
        pytest.skip(problem)
    _empty_mysql_tables()
    return Backend("mariadb", MYSQL_URL)


@pytest.fixture(autouse=True)
def _no_leaked_context() -> Iterator[None]:
    """Fail a test that leaves an app or request context pushed."""
    yield
    leaked_request = _cv_request.get(None)
    leaked_app = _cv_app.get(None)
    assert leaked_request is None, "the test left a request context pushed"
    assert leaked_app is None, "the test left an app context pushed"


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(backend: Backend, tmp_path: Path) -> Iterator[AppFactory]:
    """Build apps with flask-kpsession on the test's backend; extra config wins.

    The purge job is off unless a test turns it on; any job started is stopped
    when the test ends.
    """
    made: list[tuple[Flask, KPSession]] = []

    def factory(extension: KPSession | None = None, **config: Any) -> Flask:
        app = Flask(f"kpsession_test_{len(made)}", instance_path=str(tmp_path / "i"))
        app.config.update(
            SECRET_KEY="test secret key, long enough to be a real one",
            TESTING=True,
            SQLALCHEMY_DATABASE_URI=backend.url,
            KPSESSION_CLEANUP_ENABLED=False,
            **FAST_PASSWORDS,
        )
        app.config.update(config)
        kp = extension or KPSession()
        kp.init_app(app)
        made.append((app, kp))
        return app

    yield factory

    for app, kp in made:
        with app.app_context():
            kp.stop_timeout_loop()
            kp.db().engine.dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    """An app with the default configuration (purge job off)."""
    return make_app()


@pytest.fixture
def kp(app: Flask) -> KPSession:
    """The extension registered on ``app``."""
    extension: KPSession = app.extensions["kpsession"]
    return extension


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def user(app: Flask, kp: KPSession) -> tuple[str, str]:
    """A built-in user ``alice`` with a known password."""
    with app.app_context():
        kp.create_user("alice", "correct horse battery")
    return "alice", "correct horse battery"

"""Database outages: 503 JSON while MariaDB cannot be reached, recovery without restart.

A :class:`TcpProxy` of the test's own sits between the app and MariaDB; cutting
it drops every pooled connection and refuses new ones, as a server restart does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask, jsonify
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from flask_kpsession import (
    DatabaseUnavailableError,
    KPSession,
    current_session,
    login_required,
)

from .conftest import (
    FAST_PASSWORDS,
    MYSQL_DATABASE,
    MYSQL_URL,
    AppFactory,
    Backend,
    mysql_connect,
)
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)

CREDENTIALS = {"username": "alice", "password": "correct horse battery"}


@pytest.fixture
def proxy(backend: Backend) -> Iterator[TcpProxy]:
    url = make_url(MYSQL_URL)
    with TcpProxy(url.host or "127.0.0.1", url.port or 3306) as running:
        yield running


def _through(proxy: TcpProxy, database: str = MYSQL_DATABASE) -> str:
    return (
        make_url(MYSQL_URL)
        .set(host="127.0.0.1", port=proxy.port, database=database)
        .render_as_string(hide_password=False)
    )


def _add_views(app: Flask) -> None:
    @app.get("/private")
    @login_required
    def private_view():
        return jsonify(user=current_session.uname)

    @app.get("/direct")
    def direct_view():
        kp: KPSession = app.extensions["kpsession"]
        return jsonify(exists=kp.session_exists("127.0.0.1", "x" * 43))


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == "unavailable"
    assert set(body) == {"error", "message"}
    assert response.headers["Retry-After"]


def test_503_while_cut_and_200_after_without_a_restart(
    make_app: AppFactory, proxy: TcpProxy
):
    app = make_app(SQLALCHEMY_DATABASE_URI=_through(proxy))
    _add_views(app)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user(CREDENTIALS["username"], CREDENTIALS["password"])
    client = app.test_client()
    login = client.post("/auth/login", json=CREDENTIALS)
    assert login.status_code == 200
    bearer = {"Authorization": f"Bearer {login.get_json()['token']}"}
    assert client.get("/private", headers=bearer).status_code == 200

    proxy.cut()
    _assert_unavailable(client.get("/auth/check", headers=bearer))
    _assert_unavailable(client.get("/private", headers=bearer))
    _assert_unavailable(client.get("/private"))  # cookie from the login
    _assert_unavailable(client.post("/auth/login", json=CREDENTIALS))
    _assert_unavailable(client.get("/direct"))
    _assert_unavailable(client.post("/auth/logout", headers=bearer))
    assert proxy.refused > 0

    proxy.restore()
    # The session outlived the outage: an outage logs nobody out.
    check = client.get("/auth/check", headers=bearer)
    assert check.status_code == 200
    assert check.get_json()["username"] == "alice"
    assert client.get("/private", headers=bearer).get_json() == {"user": "alice"}
    assert client.post("/auth/login", json=CREDENTIALS).status_code == 200
    assert client.get("/direct").get_json() == {"exists": False}


def test_an_outage_is_logged_with_its_reason_and_no_trace_reaches_the_client(
    make_app: AppFactory, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
):
    app = make_app(SQLALCHEMY_DATABASE_URI=_through(proxy))
    client = app.test_client()
    proxy.cut()
    with caplog.at_level(logging.WARNING, logger="flask_kpsession"):
        response = client.post("/auth/login", json=CREDENTIALS)
    _assert_unavailable(response)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "pymysql" not in text.lower()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("unavailable" in r.getMessage() for r in warnings)
    assert any("OperationalError" in r.getMessage() for r in warnings)


def test_the_app_starts_with_the_database_cut_and_creates_its_tables_later(
    backend: Backend, proxy: TcpProxy, tmp_path: Path
):
    database = f"{MYSQL_DATABASE}_outage"
    with mysql_connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    proxy.cut()
    try:
        app = Flask("outage_at_start", instance_path=str(tmp_path))
        app.config.update(
            SECRET_KEY="test secret key, long enough to be a real one",
            SQLALCHEMY_DATABASE_URI=_through(proxy, database),
            KPSESSION_CLEANUP_ENABLED=False,
            **FAST_PASSWORDS,
        )
        kp = KPSession(app)  # must not raise
        client = app.test_client()
        _assert_unavailable(client.post("/auth/login", json=CREDENTIALS))

        proxy.restore()
        with app.app_context():
            kp.create_user(CREDENTIALS["username"], CREDENTIALS["password"])
        login = client.post("/auth/login", json=CREDENTIALS)
        assert login.status_code == 200
        with app.app_context():
            kp.db().engine.dispose()
    finally:
        with mysql_connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")


def test_an_idle_pool_outliving_wait_timeout_gives_no_error(
    make_app: AppFactory, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
):
    # A per-connection wait_timeout: the server closes our idle connections
    # after one second, as a shortened global wait_timeout would.
    app = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={
            "connect_args": {"init_command": "SET SESSION wait_timeout=1"}
        }
    )
    _add_views(app)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        engine = kp.db().engine
        kp.create_user(CREDENTIALS["username"], CREDENTIALS["password"])
    connects: list[object] = []
    event.listen(engine, "connect", lambda *args: connects.append(args))

    client = app.test_client()
    login = client.post("/auth/login", json=CREDENTIALS)
    bearer = {"Authorization": f"Bearer {login.get_json()['token']}"}
    assert client.get("/private", headers=bearer).status_code == 200
    before = len(connects)

    time.sleep(2.5)
    with caplog.at_level(logging.DEBUG, logger="flask_kpsession"):
        assert client.get("/private", headers=bearer).get_json() == {"user": "alice"}
        assert client.get("/auth/check", headers=bearer).status_code == 200
    assert len(connects) > before  # the pooled connection was really gone
    assert any("disconnect, running again" in r.getMessage() for r in caplog.records)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_statement_the_server_refuses_is_a_bug_not_an_outage(
    app: Flask, kp: KPSession
):
    """PyMySQL raises such errors as OperationalError; they must not read as 503.

    MariaDB's "illegal mix of collations" is one; a subquery returning two rows
    where one is expected is another that is easy to provoke.
    """
    database = kp._state(app).database

    def refused(conn):
        conn.exec_driver_sql("SELECT 1 FROM DUAL WHERE 1 = (SELECT 1 UNION SELECT 2)")

    with app.app_context():
        with pytest.raises(OperationalError) as caught:
            database.run(refused)
        assert caught.value.orig.args[0] == 1242  # subquery returns more than 1 row
        assert not isinstance(caught.value, DatabaseUnavailableError)

    unreachable = Flask("unreachable", instance_path=str(Path(app.instance_path)))
    unreachable.config.update(
        SECRET_KEY="k" * 32,
        SQLALCHEMY_DATABASE_URI="mysql+pymysql://root@127.0.0.1:9/nowhere",
        KPSESSION_CLEANUP_ENABLED=False,
    )
    down = KPSession(unreachable)
    with unreachable.app_context(), pytest.raises(DatabaseUnavailableError):
        down.generate_session("127.0.0.1", "alice")


def test_a_lock_wait_that_outlasts_its_reruns_is_503_and_logs_no_hash(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
):
    """Another client holds the session's row: the due refresh cannot write."""
    app = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={
            "connect_args": {"init_command": "SET SESSION innodb_lock_wait_timeout=1"}
        },
        KPSESSION_REFRESH_THROTTLE=timedelta(0),
    )
    _add_views(app)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        token = kp.generate_session("127.0.0.1", "alice").token
    bearer = {"Authorization": f"Bearer {token}"}
    caplog.set_level(logging.DEBUG)

    with mysql_connect(MYSQL_DATABASE) as holder, holder.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT * FROM kp_sessions FOR UPDATE")
        response = app.test_client(use_cookies=False).get("/private", headers=bearer)
        cursor.execute("ROLLBACK")

    _assert_unavailable(response)
    assert "Lock wait timeout" in caplog.text
    stored = kp._state(app).sessions._hasher.digest(token)
    assert stored.hex() not in caplog.text
    assert repr(stored)[2:-1] not in caplog.text
    after = app.test_client(use_cookies=False).get("/private", headers=bearer)
    assert after.get_json() == {"user": "alice"}  # nobody was logged out

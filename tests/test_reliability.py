"""Reliability in one process: job lifecycle, pools, locks, damaged rows, proxies."""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask, jsonify
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.engine import make_url
from werkzeug.middleware.proxy_fix import ProxyFix

import flask_kpsession
from flask_kpsession import KPSession, UserSession, current_session, login_required
from flask_kpsession import scheduler as job_scheduler
from flask_kpsession.cleanup import ScheduledPurge
from flask_kpsession.clock import utcnow

from .conftest import (
    FAST_PASSWORDS,
    MYSQL_DATABASE,
    MYSQL_URL,
    AppFactory,
    Backend,
    mysql_connect,
)
from .tcp_proxy import TcpProxy

PASSWORD = "correct horse battery"
ADDR = "127.0.0.1"
mariadb_only = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)


def _sessions(kp: KPSession):
    return kp.db().metadata.tables["kp_sessions"]


def _count(kp: KPSession) -> int:
    with kp.db().engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(_sessions(kp))
        ).scalar_one()


def _add_private_view(app: Flask) -> None:
    @app.get("/private")
    @login_required
    def private_view():
        return jsonify(user=current_session.uname)


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- the job: failures, teardown, double registration ---------------------------


@mariadb_only
def test_a_failing_purge_is_logged_at_warning_with_its_reason_and_the_next_succeeds(
    backend: Backend, make_app: AppFactory, caplog: pytest.LogCaptureFixture
):
    url = make_url(MYSQL_URL)
    with TcpProxy(url.host or "127.0.0.1", url.port or 3306) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port)
        app = make_app(
            SQLALCHEMY_DATABASE_URI=through.render_as_string(hide_password=False),
            KPSESSION_TIMEOUT=timedelta(seconds=1),
            KPSESSION_CLEANUP_INTERVAL=timedelta(seconds=0.5),
        )
        kp: KPSession = app.extensions["kpsession"]
        with app.app_context():
            kp.generate_session(ADDR, "alice")

        proxy.cut()
        with caplog.at_level(logging.WARNING, logger="flask_kpsession"):
            with app.app_context():
                kp.start_timeout_loop(verbose=True)
            assert _wait_for(
                lambda: any("purge" in r.getMessage() for r in caplog.records)
            )
        failure = next(r for r in caplog.records if "purge" in r.getMessage())
        # WARNING or above shows with Python's default logging (lastResort).
        assert failure.levelno >= logging.WARNING >= logging.lastResort.level
        assert "failed" in failure.getMessage()
        assert "OperationalError" in failure.getMessage()

        proxy.restore()
        with app.app_context():
            assert _wait_for(lambda: _count(kp) == 0)
            kp.stop_timeout_loop()


def test_a_torn_down_app_leaves_no_job_and_the_next_app_gets_a_working_one(
    backend: Backend, tmp_path: Path
):
    def build(name: str) -> Flask:
        app = Flask(name, instance_path=str(tmp_path))
        app.config.update(
            SECRET_KEY="test secret key, long enough to be a real one",
            SQLALCHEMY_DATABASE_URI=backend.url,
            KPSESSION_TIMEOUT=timedelta(seconds=1),
            KPSESSION_CLEANUP_INTERVAL=timedelta(seconds=0.5),
            **FAST_PASSWORDS,
        )
        KPSession(app)
        app.test_client().get("/auth/check")  # the first request starts the job
        return app

    first = build("first")
    first_job = job_scheduler.job_id(first)
    assert job_scheduler.is_scheduled(first)
    with first.app_context():
        first.extensions["kpsession"].db().engine.dispose()
    del first
    gc.collect()
    assert job_scheduler._scheduler is not None
    assert _wait_for(lambda: job_scheduler._scheduler.get_job(first_job) is None)

    second = build("second")
    assert job_scheduler.job_id(second) != first_job
    kp: KPSession = second.extensions["kpsession"]
    with second.app_context():
        kp.generate_session(ADDR, "alice")
        try:
            assert _wait_for(lambda: _count(kp) == 0)
        finally:
            kp.stop_timeout_loop()
            kp.db().engine.dispose()


def test_init_app_twice_is_refused_and_adds_no_job(make_app: AppFactory):
    app = make_app(KPSESSION_CLEANUP_ENABLED=True)
    app.test_client().get("/auth/check")
    assert job_scheduler._scheduler is not None
    jobs = len(job_scheduler._scheduler.get_jobs())
    with pytest.raises(RuntimeError, match="already registered"):
        KPSession().init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        app.extensions["kpsession"].init_app(app)
    app.test_client().get("/auth/check")
    assert len(job_scheduler._scheduler.get_jobs()) == jobs


# -- pool hygiene --------------------------------------------------------------


def test_a_pool_of_two_survives_hundreds_of_mixed_requests(make_app: AppFactory):
    app = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={
            "pool_size": 2,
            "max_overflow": 0,
            "pool_timeout": 2,
        },
        KPSESSION_REFRESH_THROTTLE=timedelta(0),
    )
    _add_private_view(app)

    @app.get("/raises")
    def raising_view():
        assert current_session  # resolved, then the view fails
        raise RuntimeError("a view that fails")

    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("alice", PASSWORD)
        engine = kp.db().engine
    app.testing = False  # let the failing view answer 500 instead of raising
    client = app.test_client()
    seen: Counter[tuple[str, int]] = Counter()

    for n in range(60):
        login = client.post(
            "/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        seen["login", login.status_code] += 1
        bearer = {"Authorization": f"Bearer {login.get_json()['token']}"}
        seen["check", client.get("/auth/check", headers=bearer).status_code] += 1
        seen["private", client.get("/private", headers=bearer).status_code] += 1
        seen["raises", client.get("/raises", headers=bearer).status_code] += 1
        junk = {"Authorization": "Bearer " + "!" * (n % 50)}
        seen["malformed", client.get("/private", headers=junk).status_code] += 1
        unknown = {"Authorization": "Bearer " + "A" * 43}
        seen["unknown", client.get("/auth/check", headers=unknown).status_code] += 1
        if n % 6 == 0:  # stays under the login throttle
            wrong = {"username": "alice", "password": "wrong"}
            seen["wrong", client.post("/auth/login", json=wrong).status_code] += 1
        seen["logout", client.post("/auth/logout", headers=bearer).status_code] += 1
        seen["replay", client.get("/private", headers=bearer).status_code] += 1
        assert engine.pool.checkedout() == 0

    assert seen == {
        ("login", 200): 60,
        ("check", 200): 60,
        ("private", 200): 60,
        ("raises", 500): 60,
        ("malformed", 401): 60,
        ("unknown", 401): 60,
        ("wrong", 401): 10,
        ("logout", 200): 60,
        ("replay", 401): 60,
    }
    assert engine.pool.checkedout() == 0
    assert engine.pool.size() == 2


# -- deadlocks -------------------------------------------------------------------


@mariadb_only
def test_a_deadlock_is_run_again_and_commits(
    app: Flask, kp: KPSession, caplog: pytest.LogCaptureFixture
):
    with mysql_connect(MYSQL_DATABASE) as conn, conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS kp_test_locks")
        cursor.execute(
            "CREATE TABLE kp_test_locks (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"
        )
        cursor.execute(
            "INSERT INTO kp_test_locks VALUES "
            + ",".join(f"({n}, 0)" for n in range(101))
        )
    other = mysql_connect(MYSQL_DATABASE)
    other.autocommit(False)
    other_cursor = other.cursor()
    # The other transaction is the heavier one, so InnoDB picks ours as victim.
    other_cursor.execute(
        "UPDATE kp_test_locks SET v = v + 1 WHERE id BETWEEN 2 AND 100"
    )

    def finish_other() -> None:
        other_cursor.execute("UPDATE kp_test_locks SET v = v + 1 WHERE id = 0")
        other.commit()

    runs: list[int] = []
    waiter = threading.Thread(target=finish_other)

    def work(conn) -> int:
        runs.append(1)
        conn.exec_driver_sql("UPDATE kp_test_locks SET v = v + 1 WHERE id = 0")
        if len(runs) == 1:
            waiter.start()  # now waits for our lock on row 0
            time.sleep(0.3)
        conn.exec_driver_sql("UPDATE kp_test_locks SET v = v + 1 WHERE id = 2")
        return len(runs)

    try:
        with caplog.at_level(logging.DEBUG, logger="flask_kpsession"):
            with app.app_context():
                assert kp._state().database.run(work) == 2
        waiter.join(timeout=10)
        assert any("lock conflict" in r.getMessage() for r in caplog.records)
        with mysql_connect(MYSQL_DATABASE) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT v FROM kp_test_locks WHERE id IN (0, 2) ORDER BY id")
            assert cursor.fetchall() == ((2,), (2,))
    finally:
        other.close()
        with mysql_connect(MYSQL_DATABASE) as conn, conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS kp_test_locks")


@mariadb_only
def test_refreshes_racing_purges_never_fail_and_never_log_out(make_app: AppFactory):
    app = make_app(
        KPSESSION_REFRESH_THROTTLE=timedelta(0),
        KPSESSION_CLEANUP_BATCH_SIZE=50,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 30, "max_overflow": 10},
    )
    _add_private_view(app)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        table = _sessions(kp)
        tokens = [kp.generate_session(ADDR, f"user{n}").token for n in range(24)]
        engine = kp.db().engine

    stop = threading.Event()
    answers: Counter[int] = Counter()
    purged: list[int] = []
    errors: list[BaseException] = []

    def refresh(token: str) -> None:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            while not stop.is_set():
                answers[client.get("/private", headers=headers).status_code] += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def purge() -> None:
        batch = 0
        try:
            while not stop.is_set():
                now = utcnow()
                rows = [
                    {
                        "token_hash": (batch * 1000 + n).to_bytes(32, "big"),
                        "public_id": f"old{batch}x{n}",
                        "uname": f"user{n % 24}",
                        "addr": ADDR,
                        "user_agent": "",
                        "created_at": now - timedelta(hours=3),
                        "last_used_at": now - timedelta(hours=3, microseconds=n),
                    }
                    for n in range(400)
                ]
                with engine.begin() as conn:
                    conn.execute(insert(table), rows)
                with app.app_context():
                    purged.append(kp.delete_timed_out_sessions())
                batch += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=refresh, args=(t,)) for t in tokens]
    threads.append(threading.Thread(target=purge))
    for thread in threads:
        thread.start()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert set(answers) == {200}, answers
    assert sum(answers.values()) > 100
    assert len(purged) >= 2 and all(count == 400 for count in purged)
    with app.app_context():
        assert _count(kp) == 24
        assert all(kp.session_exists(ADDR, token) for token in tokens)


# -- the purge at scale, and index use -------------------------------------------


class _Statements:
    """Every statement one engine runs, with its parameters."""

    def __init__(self, engine) -> None:
        self.seen: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if not executemany:
            self.seen.append((statement, parameters))


def _explain(statement: str, parameters: object) -> list[dict]:
    with mysql_connect(MYSQL_DATABASE) as conn:
        with conn.cursor() as cursor:
            cursor.execute("EXPLAIN " + statement, parameters)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _fill(kp: KPSession, live: int, dead: int) -> None:
    now = utcnow()
    rows = [
        {
            "token_hash": n.to_bytes(32, "big"),
            "public_id": f"bulk{n}",
            "uname": f"user{n % 500}",
            "addr": ADDR,
            "user_agent": "",
            "created_at": now - timedelta(hours=3 if n < dead else 0, minutes=1),
            "last_used_at": now
            - (timedelta(hours=3) if n < dead else timedelta(0))
            + timedelta(microseconds=n % 1000),
        }
        for n in range(live + dead)
    ]
    with kp.db().engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(_sessions(kp)), rows[start : start + 5000])
        for table in ("kp_sessions", "kp_users"):
            conn.exec_driver_sql(f"ANALYZE TABLE {table}")


@mariadb_only
def test_the_purge_deletes_in_bounded_batches_through_an_index(make_app: AppFactory):
    # The table stays large next to a batch, as in production: on a tiny
    # table the optimizer rightly prefers a scan to any index.
    app = make_app(KPSESSION_CLEANUP_BATCH_SIZE=100)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        _fill(kp, live=5000, dead=3000)
        statements = _Statements(kp.db().engine)
        assert kp.delete_timed_out_sessions() == 3000
        assert _count(kp) == 5000

    deletes = [(s, p) for s, p in statements.seen if s.lstrip().startswith("DELETE")]
    session_deletes = [(s, p) for s, p in deletes if "kp_sessions" in s]
    assert len(session_deletes) >= 30  # 3000 rows, 100 at a time
    for statement, parameters in session_deletes:
        assert len(parameters) <= 100 + 2  # the keys and the cut-off
        for row in _explain(statement, parameters):
            assert row["type"] == "range" and row["key"], row
    selects = [
        (s, p)
        for s, p in statements.seen
        if s.lstrip().startswith("SELECT") and re.search(r"FROM kp_sessions\s+WHERE", s)
    ]
    assert len(selects) >= 30
    for statement, parameters in selects:
        # The cut-off is a bound value; the column is never computed on.
        where = statement.split("WHERE", 1)[1]
        assert not re.search(r"kp_sessions\.\w+\s*[-+]", where), statement
        for row in _explain(statement, parameters):
            assert row["type"] in ("range", "ref", "index", "const"), (statement, row)
            assert row["key"], (statement, row)


@mariadb_only
def test_every_statement_on_the_session_tables_uses_an_index(make_app: AppFactory):
    app = make_app(
        KPSESSION_REFRESH_THROTTLE=timedelta(0), KPSESSION_CLEANUP_BATCH_SIZE=100
    )
    _add_private_view(app)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        _fill(kp, live=5000, dead=3000)
        kp.create_user("alice", PASSWORD)
        users = kp.db().metadata.tables["kp_users"]
        now = utcnow()
        fillers = [
            {
                "username": f"filler{n}",
                "password_hash": "$argon2id$not-a-real-hash",
                "created_at": now,
                "password_changed_at": now,
            }
            for n in range(200)
        ]
        with kp.db().engine.begin() as conn:
            conn.execute(insert(users), fillers)
        with kp.db().engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE TABLE kp_users")
        statements = _Statements(kp.db().engine)

    client = app.test_client(use_cookies=False)
    login = client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    bearer = {"Authorization": f"Bearer {login.get_json()['token']}"}
    assert client.get("/auth/check", headers=bearer).status_code == 200
    assert client.get("/private", headers=bearer).status_code == 200
    second = client.post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert second.status_code == 200
    sessions = client.get("/auth/sessions", headers=bearer).get_json()["sessions"]
    assert len(sessions) == 2
    other_id = next(s["id"] for s in sessions if not s["current"])
    revoked = client.delete(f"/auth/sessions/{other_id}", headers=bearer)
    assert revoked.status_code == 200
    wrong = client.post("/auth/login", json={"username": "alice", "password": "wrong"})
    assert wrong.status_code == 401
    with app.app_context():
        assert kp.delete_timed_out_sessions() == 3000
        state = kp._state()
        job = ScheduledPurge(
            state.database, state.purger, state.sessions.boundary, timedelta(hours=1)
        )
        assert job.run(lambda: True) == 0
    assert client.post("/auth/logout", headers=bearer).status_code == 200

    checked = 0
    for statement, parameters in statements.seen:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb not in ("SELECT", "UPDATE", "DELETE") or "kp_" not in statement:
            continue
        for row in _explain(statement, parameters):
            if not str(row["table"]).startswith("kp_"):
                continue
            checked += 1
            assert row["type"] != "ALL" or row["rows"] in (None, 0, 1), (statement, row)
    assert checked >= 10


# -- damaged rows ----------------------------------------------------------------


def test_damaged_rows_are_refused_never_a_500_and_purged(
    backend: Backend, make_app: AppFactory
):
    app = make_app()
    _add_private_view(app)
    kp: KPSession = app.extensions["kpsession"]
    now = utcnow()
    damage = {
        "future": {"last_used_at": now + timedelta(days=3650)},
        "future_created": {"created_at": now + timedelta(days=3650)},
        "nameless": {"uname": ""},
        "bad_addr": {"addr": "not an address"},
    }
    tokens: dict[str, str] = {}
    with app.app_context():
        table = _sessions(kp)
        for name, values in damage.items():
            session = kp.generate_session(ADDR, "alice")
            assert session.token is not None
            tokens[name] = session.token
            with kp.db().engine.begin() as conn:
                conn.execute(
                    update(table)
                    .where(table.c.public_id == session.id)
                    .values(**values)
                )
        live = kp.generate_session(ADDR, "bob").token
        if backend.is_mysql:
            zero = kp.generate_session(ADDR, "alice")
            tokens["zero"] = zero.token or ""
            with mysql_connect(MYSQL_DATABASE) as conn, conn.cursor() as cursor:
                cursor.execute("SET SESSION sql_mode = ''")
                cursor.execute(
                    "UPDATE kp_sessions SET last_used_at = '0000-00-00 00:00:00' "
                    "WHERE public_id = %s",
                    (zero.id,),
                )

    client = app.test_client()
    for name in ("future", "nameless"):
        response = client.get(
            "/private", headers={"Authorization": f"Bearer {tokens[name]}"}
        )
        assert response.status_code == 401, name
    # The purge takes what the request path has not met.
    with app.app_context():
        purged = kp.delete_timed_out_sessions()
    assert purged >= 1
    for name, token in tokens.items():
        response = client.get(
            "/auth/check", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, name
        assert response.get_json()["error"] == "unauthorized"
    with app.app_context():
        assert _count(kp) == 1  # only bob's
        assert kp.session_exists(ADDR, live or "")


# -- datetimes --------------------------------------------------------------------


def test_the_package_uses_aware_datetimes_only():
    package = Path(flask_kpsession.__file__).parent
    forbidden = re.compile(
        r"datetime\.utcnow\(|utcfromtimestamp\(|datetime\.now\(\)|date\.today\(\)"
        r"|\.fromtimestamp\([^,)]*\)"
    )
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(package.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []


def test_a_naive_datetime_is_refused_at_the_boundary(app: Flask, kp: KPSession):
    from datetime import datetime

    naive = datetime(2026, 1, 1, 12, 0)
    with app.app_context(), pytest.raises(ValueError, match="timezone-aware"):
        kp.add_session(UserSession(ADDR, "n" * 43, "alice", created_at=naive))


# -- proxies ----------------------------------------------------------------------


def test_forwarding_headers_change_nothing_without_proxyfix(app: Flask, user):
    _add_private_view(app)
    client = app.test_client()
    forged = {"X-Forwarded-For": "198.51.100.1", "X-Real-IP": "198.51.100.1"}
    login = client.post(
        "/auth/login", json={"username": "alice", "password": user[1]}, headers=forged
    )
    token = login.get_json()["token"]
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        assert kp.get_session(ADDR, token).addr == ADDR
    bearer = {"Authorization": f"Bearer {token}"}
    other = {**bearer, "X-Forwarded-For": "203.0.113.50"}
    assert client.get("/private", headers=other).status_code == 200
    elsewhere = {**bearer, "X-Forwarded-For": ADDR}
    assert (
        client.get(
            "/private", headers=elsewhere, environ_base={"REMOTE_ADDR": "203.0.113.50"}
        ).status_code
        == 401
    )


def test_behind_proxyfix_exactly_the_trusted_hop_counts(app: Flask, user):
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    _add_private_view(app)
    client = app.test_client()
    # The client forged the first entry; the proxy appended the real address.
    chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    login = client.post(
        "/auth/login", json={"username": "alice", "password": user[1]}, headers=chain
    )
    token = login.get_json()["token"]
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        assert kp.get_session("203.0.113.9", token).addr == "203.0.113.9"
    bearer = {"Authorization": f"Bearer {token}"}
    again = {**bearer, "X-Forwarded-For": "10.0.0.1, 203.0.113.9"}
    assert client.get("/private", headers=again).status_code == 200
    moved = {**bearer, "X-Forwarded-For": "203.0.113.9, 203.0.113.10"}
    assert client.get("/private", headers=moved).status_code == 401


# -- logout replay ----------------------------------------------------------------


def test_a_token_after_logout_and_repeated_or_odd_logouts_are_harmless(
    app: Flask, user
):
    _add_private_view(app)
    client = app.test_client(use_cookies=False)
    login = client.post("/auth/login", json={"username": "alice", "password": user[1]})
    token = login.get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.post("/auth/logout", headers=bearer).get_json() == {
        "logged_out": True
    }

    assert client.get("/auth/check", headers=bearer).status_code == 401
    assert client.get("/private", headers=bearer).status_code == 401
    again = client.post("/auth/logout", headers=bearer)
    assert (again.status_code, again.get_json()) == (200, {"logged_out": False})
    for headers in (
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not a token"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Cookie": "kp_session=" + "%00" * 40},
        {"Cookie": f"kp_session={token}"},
    ):
        response = client.post("/auth/logout", headers=headers)
        assert response.status_code == 200, headers
        assert response.get_json() == {"logged_out": False}
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        assert not kp.session_exists(ADDR, token)
        assert _count(kp) == 0

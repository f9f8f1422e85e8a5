"""What one authenticated request costs the database, counted, never timed.

Statements are counted with SQLAlchemy's events on both backends, and on
MariaDB also with the server's own per-connection status counters, which see
every round trip the driver makes (the pool's resets included).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, jsonify
from sqlalchemy import Engine, event, text

from flask_kpsession import KPSession, UserSession, current_session, login_required
from flask_kpsession.clock import utcnow

from .conftest import AppFactory, Backend

ADDR = "127.0.0.1"


def _protected(app: Flask) -> Flask:
    @app.get("/api")
    @login_required
    def api() -> Any:
        return jsonify(user=current_session.uname)

    return app


def _sessions(app: Flask, count: int, idle: timedelta = timedelta(0)) -> list[str]:
    kp: KPSession = app.extensions["kpsession"]
    now = utcnow()
    tokens = []
    with app.app_context():
        for n in range(count):
            token = f"{n:02d}" + "t" * 41
            kp.add_session(
                UserSession(ADDR, token, f"user{n}", last_used_at=now - idle)
            )
            tokens.append(token)
    return tokens


def _get(app: Flask, token: str, addr: str = ADDR) -> int:
    response = app.test_client().get(
        "/api",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": addr},
    )
    return response.status_code


@contextmanager
def _counting(engine: Engine) -> Iterator[Counter[str]]:
    """Count statements (by verb), commits, and rollbacks done by the pool's reset."""
    counts: Counter[str] = Counter()

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts[statement.split(None, 1)[0].upper()] += 1

    def on_commit(conn: Any) -> None:
        counts["COMMIT"] += 1

    def on_rollback(conn: Any) -> None:
        counts["ROLLBACK"] += 1

    def on_reset(dbapi_conn: Any, record: Any, state: Any) -> None:
        if not state.transaction_was_reset:
            counts["RESET"] += 1

    listeners = [
        (engine, "before_cursor_execute", on_execute),
        (engine, "commit", on_commit),
        (engine, "rollback", on_rollback),
        (engine.pool, "reset", on_reset),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counts
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def _engine(app: Flask) -> Engine:
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        return kp.db().engine


def test_a_steady_state_request_costs_one_select_and_one_reset(app: Flask):
    _protected(app)
    tokens = _sessions(app, 4)
    assert _get(app, tokens[0]) == 200  # warm: tables checked, pool filled

    with _counting(_engine(app)) as counts:
        for n in range(8):
            assert _get(app, tokens[n % 4]) == 200

    # Per request: the SELECT, then the read-only transaction ends with the
    # connection's return (one ROLLBACK); no COMMIT, no second reset.
    assert counts == Counter({"SELECT": 8, "ROLLBACK": 8})


def test_the_refresh_writes_once_per_throttle_interval(make_app: AppFactory):
    app = _protected(make_app(KPSESSION_REFRESH_THROTTLE=timedelta(seconds=60)))
    stale = _sessions(app, 2, idle=timedelta(minutes=2))

    with _counting(_engine(app)) as counts:
        for _ in range(3):
            for token in stale:
                assert _get(app, token) == 200

    # The first request of each session refreshes it (UPDATE + COMMIT, and the
    # pool's reset after the commit); the others only read.
    assert counts["SELECT"] == 6
    assert counts["UPDATE"] == 2
    assert counts["COMMIT"] == 2
    assert counts["RESET"] == 2
    assert counts["ROLLBACK"] == 4


def test_a_dead_session_is_deleted_and_committed(make_app: AppFactory):
    app = _protected(make_app(KPSESSION_TIMEOUT=10))
    (token,) = _sessions(app, 1, idle=timedelta(minutes=11))

    with _counting(_engine(app)) as counts:
        assert _get(app, token) == 401
        assert _get(app, token) == 401

    assert counts["SELECT"] == 2
    assert counts["DELETE"] == 1
    assert counts["COMMIT"] == 1


@pytest.mark.parametrize(
    "backend", [pytest.param("mariadb", marks=pytest.mark.mariadb)], indirect=True
)
def test_mariadb_sees_two_round_trips_per_request(
    backend: Backend, make_app: AppFactory
):
    assert backend.is_mysql
    app = _protected(
        make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0})
    )
    tokens = _sessions(app, 4)
    assert _get(app, tokens[0]) == 200
    engine = _engine(app)
    names = ("Questions", "Com_select", "Com_commit", "Com_rollback", "Com_update")

    def status() -> Counter[str]:
        # The pool holds one connection: this is the one the requests use.
        with engine.connect() as conn:
            rows = conn.execute(text("SHOW SESSION STATUS")).all()
        return Counter({name: int(value) for name, value in rows if name in names})

    first = status()
    second = status()
    overhead = second - first  # what reading the counters itself costs
    for n in range(10):
        assert _get(app, tokens[n % 4]) == 200
    third = status()

    spent = third - second
    spent.subtract(overhead)
    assert +spent == Counter({"Questions": 20, "Com_select": 10, "Com_rollback": 10})


# -- the validation cache ---------------------------------------------------------


class FakeMonotonic:
    """Stands in for ``time.monotonic`` in the cache module."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    clock = FakeMonotonic()
    monkeypatch.setattr("flask_kpsession.cache.time.monotonic", clock)
    return clock


def _cached_app(make_app: AppFactory, **config: Any) -> Flask:
    config.setdefault("KPSESSION_VALIDATION_CACHE", timedelta(milliseconds=500))
    return _protected(make_app(**config))


def _delete_behind_the_extensions_back(app: Flask) -> None:
    """Remove every session as another process (or server) would."""
    with _engine(app).begin() as conn:
        conn.execute(text("DELETE FROM kp_sessions"))


def test_the_cache_is_off_by_default(app: Flask):
    kp: KPSession = app.extensions["kpsession"]
    assert kp.settings(app).validation_cache is None
    _protected(app)
    (token,) = _sessions(app, 1)
    with _counting(_engine(app)) as counts:
        for _ in range(3):
            assert _get(app, token) == 200
    assert counts["SELECT"] == 3


def test_cached_requests_skip_the_database(
    make_app: AppFactory, monotonic: FakeMonotonic
):
    app = _cached_app(make_app)
    tokens = _sessions(app, 4)
    with _counting(_engine(app)) as counts:
        for _ in range(5):
            for token in tokens:
                assert _get(app, token) == 200
                monotonic.now += 0.01
    assert counts["SELECT"] == 4  # the first request of each token


def test_a_revocation_elsewhere_is_seen_once_the_entry_is_older_than_the_ttl(
    make_app: AppFactory, monotonic: FakeMonotonic
):
    app = _cached_app(make_app)
    (token,) = _sessions(app, 1)
    assert _get(app, token) == 200

    _delete_behind_the_extensions_back(app)
    monotonic.now += 0.49
    assert _get(app, token) == 200  # the documented lag, bounded by the TTL
    monotonic.now += 0.01
    assert _get(app, token) == 401
    assert _get(app, token) == 401


def test_without_the_cache_a_revocation_elsewhere_is_seen_at_once(app: Flask):
    _protected(app)
    (token,) = _sessions(app, 1)
    assert _get(app, token) == 200
    _delete_behind_the_extensions_back(app)
    assert _get(app, token) == 401


def test_logout_in_this_process_revokes_at_once(
    make_app: AppFactory, monotonic: FakeMonotonic
):
    app = _cached_app(make_app)
    token, other = _sessions(app, 2)
    assert _get(app, token) == 200
    assert _get(app, other) == 200

    response = app.test_client().post(
        "/auth/logout",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": ADDR},
    )
    assert response.get_json() == {"logged_out": True}
    assert _get(app, token) == 401
    assert _get(app, other) == 200


def test_removals_through_the_operations_revoke_at_once(
    make_app: AppFactory, monotonic: FakeMonotonic
):
    app = _cached_app(make_app)
    kp: KPSession = app.extensions["kpsession"]
    tokens = _sessions(app, 5)
    for token in tokens:
        assert _get(app, token) == 200

    with app.app_context():
        assert kp.remove_session(ADDR, tokens[0])
    assert _get(app, tokens[0]) == 401
    assert _get(app, tokens[1]) == 200

    with app.app_context():
        (listed,) = kp.list_sessions("user1")
        assert listed.id is not None
        assert kp.revoke_session(listed.id)
    assert _get(app, tokens[1]) == 401
    assert _get(app, tokens[2]) == 200

    with app.app_context():
        assert kp.revoke_user_sessions("user2") == 1
    assert _get(app, tokens[2]) == 401
    assert _get(app, tokens[3]) == 200

    with app.app_context():
        assert kp.delete_timed_out_sessions(0) == 2
    assert _get(app, tokens[3]) == 401
    assert _get(app, tokens[4]) == 401


def test_a_cached_session_still_times_out_on_the_clock(
    make_app: AppFactory, monotonic: FakeMonotonic, monkeypatch: pytest.MonkeyPatch
):
    app = _cached_app(make_app, KPSESSION_TIMEOUT=timedelta(seconds=30))
    (token,) = _sessions(app, 1)
    assert _get(app, token) == 200

    later = utcnow() + timedelta(seconds=31)
    monkeypatch.setattr("flask_kpsession.timeouts.utcnow", lambda: later)
    assert _get(app, token) == 401


def test_a_cached_session_is_still_bound_to_its_address(
    make_app: AppFactory, monotonic: FakeMonotonic
):
    app = _cached_app(make_app)
    (token,) = _sessions(app, 1)
    assert _get(app, token) == 200
    assert _get(app, token, addr="198.51.100.9") == 401
    assert _get(app, token) == 200


def test_a_due_refresh_goes_to_the_database(
    make_app: AppFactory, monotonic: FakeMonotonic, monkeypatch: pytest.MonkeyPatch
):
    app = _cached_app(make_app, KPSESSION_REFRESH_THROTTLE=timedelta(seconds=60))
    (token,) = _sessions(app, 1, idle=timedelta(seconds=50))
    with _counting(_engine(app)) as counts:
        assert _get(app, token) == 200  # read, cached: not yet due
        later = utcnow() + timedelta(seconds=15)
        monkeypatch.setattr("flask_kpsession.timeouts.utcnow", lambda: later)
        monotonic.now += 0.2
        assert _get(app, token) == 200  # due now on the wall clock: refreshed
        monotonic.now += 0.2
        assert _get(app, token) == 200  # cached again, with the new clock
    assert counts["SELECT"] == 2
    assert counts["UPDATE"] == 1


def test_the_cache_is_bounded_and_drops_the_oldest_first():
    from flask_kpsession.cache import CachedRow, ValidationCache

    now = utcnow()
    cache = ValidationCache(timedelta(seconds=1), max_entries=3)
    for n in range(5):
        row = CachedRow(f"id{n}", "alice", ADDR, "", now, now)
        cache.put(bytes([n]) * 32, row, cache.generation)
    assert len(cache) == 3
    assert cache.get(bytes([0]) * 32) is None
    assert cache.get(bytes([4]) * 32) is not None

    # A row read before a removal is not cached after it.
    generation = cache.generation
    cache.discard_session("id9")
    cache.put(bytes([9]) * 32, CachedRow("id9", "bob", ADDR, "", now, now), generation)
    assert cache.get(bytes([9]) * 32) is None


@pytest.mark.parametrize(
    "backend", [pytest.param("mariadb", marks=pytest.mark.mariadb)], indirect=True
)
def test_the_request_select_is_a_primary_key_lookup(
    backend: Backend, make_app: AppFactory
):
    app = _protected(make_app())
    tokens = _sessions(app, 3)
    engine = _engine(app)
    seen: list[tuple[str, Any]] = []

    def on_execute(
        conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any
    ) -> None:
        if statement.startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        assert _get(app, tokens[1]) == 200
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)

    (statement, parameters), *_ = seen
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN " + statement, parameters)
        columns = [d[0] for d in cursor.description]
        (plan,) = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        raw.close()
    assert plan["key"] == "PRIMARY"
    assert plan["type"] == "const"
    assert int(plan["rows"]) == 1

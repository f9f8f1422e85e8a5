"""Refresh throttling decided from the row's own ``last_used_at``, and its clamp.

Two apps on one database stand in for two worker processes: neither may keep
its own memory of when a session was last refreshed. The tests move the stored
clock back instead of sleeping, and count the UPDATE statements sent.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from flask import Flask, jsonify
from sqlalchemy import event, select, update

from flask_kpsession import KPSession, current_session, login_required
from flask_kpsession.clock import utcnow

from .conftest import AppFactory

ADDR = "127.0.0.1"


def _worker(make_app: AppFactory, **config) -> Flask:
    app = make_app(**config)

    @app.get("/private")
    @login_required
    def private_view():
        return jsonify(user=current_session.uname)

    return app


def _updates(app: Flask) -> list[str]:
    """Record the UPDATEs sent from now on (the tests' own too: clear after those)."""
    with app.app_context():
        engine = app.extensions["kpsession"].db().engine
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append(statement)

    return seen


def _set_last_used(app: Flask, moment: datetime) -> None:
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        table = kp.db().metadata.tables["kp_sessions"]
        with kp.db().engine.begin() as conn:
            conn.execute(update(table).values(last_used_at=moment))


def _last_used(app: Flask) -> datetime:
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        table = kp.db().metadata.tables["kp_sessions"]
        with kp.db().engine.connect() as conn:
            moment: datetime = conn.execute(select(table.c.last_used_at)).scalar_one()
    return moment


def _get(app: Flask, token: str) -> int:
    response = app.test_client(use_cookies=False).get(
        "/private", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


def test_a_refresh_by_one_worker_spares_the_other_its_write(make_app: AppFactory):
    first = _worker(make_app)
    second = _worker(make_app)
    with first.app_context():
        token = first.extensions["kpsession"].generate_session(ADDR, "alice").token
    first_updates, second_updates = _updates(first), _updates(second)

    _set_last_used(first, utcnow() - timedelta(minutes=5))
    first_updates.clear()
    assert _get(first, token) == 200
    assert len(first_updates) == 1
    assert utcnow() - _last_used(first) < timedelta(seconds=30)

    # The second worker never saw this session: only the row tells it the
    # refresh is recent.
    assert _get(second, token) == 200
    assert second_updates == []


def test_an_old_clock_in_the_row_is_refreshed_whatever_this_process_did(
    make_app: AppFactory,
):
    app = _worker(make_app)
    with app.app_context():
        token = app.extensions["kpsession"].generate_session(ADDR, "alice").token
    updates = _updates(app)

    for _ in range(3):
        _set_last_used(app, utcnow() - timedelta(minutes=2))
        updates.clear()
        assert _get(app, token) == 200
        assert _get(app, token) == 200
        assert len(updates) == 1


@pytest.mark.parametrize(
    ("age", "writes"),
    [(timedelta(seconds=30), 0), (timedelta(seconds=90), 1)],
)
def test_the_clamped_throttle_is_the_one_the_hook_uses(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture, age, writes
):
    caplog.set_level(logging.INFO, logger="flask_kpsession")
    app = _worker(
        make_app, KPSESSION_TIMEOUT=10, KPSESSION_REFRESH_THROTTLE=timedelta(minutes=5)
    )
    assert any("KPSESSION_REFRESH_THROTTLE" in r.getMessage() for r in caplog.records)
    with app.app_context():
        token = app.extensions["kpsession"].generate_session(ADDR, "alice").token
    updates = _updates(app)

    _set_last_used(app, utcnow() - age)
    updates.clear()
    assert _get(app, token) == 200
    assert len(updates) == writes  # 90 s is past the clamp (1 min), not 5 min


def test_use_session_always_writes_however_recent_the_refresh(
    make_app: AppFactory,
):
    app = make_app(KPSESSION_REFRESH_THROTTLE=timedelta(minutes=10))
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        token = kp.generate_session(ADDR, "alice").token
        updates = _updates(app)
        results = [kp.use_session(ADDR, token) for _ in range(3)]
    assert results == [True, True, True]
    assert len(updates) == 3


def test_a_foreign_or_timed_out_presentation_never_writes(make_app: AppFactory):
    app = _worker(make_app, KPSESSION_REFRESH_THROTTLE=timedelta(0))
    with app.app_context():
        token = app.extensions["kpsession"].generate_session(ADDR, "alice").token
    updates = _updates(app)

    stranger = app.test_client(use_cookies=False).get(
        "/private",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert stranger.status_code == 401
    assert updates == []

    _set_last_used(app, utcnow() - timedelta(hours=3))
    updates.clear()
    assert _get(app, token) == 401
    assert updates == []

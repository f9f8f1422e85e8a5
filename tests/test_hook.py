"""The before_request hook, ``current_session`` and ``@login_required``."""

from __future__ import annotations

import time
from datetime import timedelta

from flask import Flask, jsonify
from sqlalchemy import event, select

from flask_kpsession import KPSession, current_session, login_required

from .conftest import AppFactory


def _add_views(app: Flask) -> None:
    @app.get("/open")
    def open_view():
        if current_session:
            return jsonify(user=current_session.uname, addr=current_session.addr)
        return jsonify(user=None)

    @app.get("/private")
    @login_required
    def private_view():
        return jsonify(user=current_session.uname)


def _token(app: Flask, username: str = "alice") -> str:
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        session = kp.generate_session("127.0.0.1", username)
    assert session.token is not None
    return session.token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_current_session_is_falsy_without_a_token(app: Flask):
    _add_views(app)
    response = app.test_client().get("/open")
    assert response.get_json() == {"user": None}


def test_current_session_behaves_as_the_session(app: Flask):
    _add_views(app)
    token = _token(app)
    response = app.test_client().get("/open", headers=_bearer(token))
    assert response.get_json() == {"user": "alice", "addr": "127.0.0.1"}


def test_current_session_is_falsy_outside_a_request():
    assert not current_session


def test_login_required_answers_401_json_without_a_session(app: Flask):
    _add_views(app)
    response = app.test_client().get("/private")
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_login_required_lets_a_live_session_through(app: Flask):
    _add_views(app)
    response = app.test_client().get("/private", headers=_bearer(_token(app)))
    assert response.status_code == 200
    assert response.get_json() == {"user": "alice"}


def test_the_cookie_carries_the_session_too(app: Flask):
    _add_views(app)
    client = app.test_client()
    client.set_cookie("kp_session", _token(app))
    assert client.get("/private").get_json() == {"user": "alice"}


def test_the_bearer_header_wins_over_the_cookie(app: Flask):
    _add_views(app)
    client = app.test_client()
    client.set_cookie("kp_session", _token(app, "alice"))
    response = client.get("/private", headers=_bearer(_token(app, "bob")))
    assert response.get_json() == {"user": "bob"}


def test_another_authorization_scheme_leaves_the_cookie_in_charge(app: Flask):
    _add_views(app)
    client = app.test_client()
    client.set_cookie("kp_session", _token(app))
    response = client.get("/private", headers={"Authorization": "Basic YTpi"})
    assert response.get_json() == {"user": "alice"}


def _count_updates(app: Flask) -> list[str]:
    kp: KPSession = app.extensions["kpsession"]
    statements: list[str] = []
    with app.app_context():
        engine = kp.db().engine

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return statements


def test_the_hook_refreshes_at_most_once_per_throttle_interval(make_app: AppFactory):
    app = make_app(KPSESSION_REFRESH_THROTTLE=timedelta(seconds=1))
    _add_views(app)
    token = _token(app)
    updates = _count_updates(app)
    client = app.test_client()

    for _ in range(5):
        assert client.get("/private", headers=_bearer(token)).status_code == 200
    assert len(updates) == 0  # the login itself counts as the latest refresh

    time.sleep(1.05)
    for _ in range(5):
        assert client.get("/private", headers=_bearer(token)).status_code == 200
    assert len(updates) == 1


def test_a_zero_throttle_refreshes_on_every_request(make_app: AppFactory):
    app = make_app(KPSESSION_REFRESH_THROTTLE=timedelta(0))
    _add_views(app)
    token = _token(app)
    updates = _count_updates(app)
    client = app.test_client()

    for _ in range(3):
        client.get("/private", headers=_bearer(token))
    assert len(updates) == 3


def test_the_hook_refresh_moves_last_used_at(make_app: AppFactory):
    app = make_app(KPSESSION_REFRESH_THROTTLE=timedelta(0))
    _add_views(app)
    kp: KPSession = app.extensions["kpsession"]
    token = _token(app)
    with app.app_context():
        before = kp.get_session("127.0.0.1", token).last_used_at
    time.sleep(0.01)
    app.test_client().get("/private", headers=_bearer(token))
    with app.app_context():
        after = kp.get_session("127.0.0.1", token).last_used_at
    assert after > before


def test_the_hook_keeps_a_session_alive_with_short_real_timeouts(
    make_app: AppFactory,
):
    app = make_app(
        KPSESSION_TIMEOUT=timedelta(seconds=1),
        KPSESSION_REFRESH_THROTTLE=timedelta(0),
    )
    _add_views(app)
    token = _token(app)
    client = app.test_client()
    for _ in range(3):
        time.sleep(0.5)
        assert client.get("/private", headers=_bearer(token)).status_code == 200
    time.sleep(1.1)
    assert client.get("/private", headers=_bearer(token)).status_code == 401


def test_the_hook_deletes_a_timed_out_session_it_meets(make_app: AppFactory):
    app = make_app(KPSESSION_TIMEOUT=timedelta(seconds=1))
    _add_views(app)
    kp: KPSession = app.extensions["kpsession"]
    token = _token(app)
    time.sleep(1.1)
    assert app.test_client().get("/private", headers=_bearer(token)).status_code == 401
    with app.app_context():
        table = kp.db().metadata.tables["kp_sessions"]
        with kp.db().engine.connect() as conn:
            assert conn.execute(select(table.c.uname)).all() == []


def test_without_the_hook_the_session_is_resolved_on_first_use(make_app: AppFactory):
    app = make_app(KPSESSION_HOOK_ENABLED=False)
    _add_views(app)
    token = _token(app)
    selects: list[str] = []
    with app.app_context():
        engine = app.extensions["kpsession"].db().engine

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        if "kp_sessions" in statement:
            selects.append(statement)

    @app.get("/public")
    def public_view():
        return "no session needed"

    client = app.test_client()
    assert client.get("/public", headers=_bearer(token)).status_code == 200
    assert selects == []
    assert client.get("/private", headers=_bearer(token)).get_json() == {
        "user": "alice"
    }
    assert len(selects) == 1


def test_one_requests_session_never_answers_for_the_next_in_a_shared_app_context(
    app: Flask,
):
    """Flask reuses a pushed app context (and its ``g``) for requests inside it."""
    _add_views(app)
    alice, bob = _token(app, "alice"), _token(app, "bob")
    anonymous = app.test_client(use_cookies=False)

    with app.app_context():
        assert anonymous.get("/private", headers=_bearer(alice)).get_json() == {
            "user": "alice"
        }
        assert anonymous.get("/open").get_json() == {"user": None}
        assert anonymous.get("/auth/check").status_code == 401
        assert anonymous.get("/private", headers=_bearer(bob)).get_json() == {
            "user": "bob"
        }
        with app.test_request_context("/open"):
            assert not current_session


def test_login_required_runs_async_views(app: Flask):
    @app.get("/async-private")
    @login_required
    async def async_private_view():
        return jsonify(user=current_session.uname)

    client = app.test_client(use_cookies=False)
    assert client.get("/async-private").status_code == 401
    response = client.get("/async-private", headers=_bearer(_token(app)))
    assert response.status_code == 200
    assert response.get_json() == {"user": "alice"}

"""The switches for the routes, the hook and the purge job, alone and together."""

from __future__ import annotations

from flask import Flask, jsonify, make_response
from sqlalchemy import event

from flask_kpsession import KPSession, current_session, login_required
from flask_kpsession.scheduler import is_scheduled

from .conftest import AppFactory


def _host_views(app: Flask, kp: KPSession) -> None:
    @app.post("/my-login")
    def my_login():
        session = kp.log_in("alice", "correct horse battery")
        response = make_response(jsonify(token=session.token))
        kp.set_cookie(response, session)
        return response

    @app.get("/me")
    @login_required
    def me():
        return jsonify(user=current_session.uname)


def _session_queries(app: Flask) -> list[str]:
    with app.app_context():
        engine = app.extensions["kpsession"].db().engine
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        if "kp_sessions" in statement:
            seen.append(statement)

    return seen


def test_everything_off_leaves_the_operations_and_decorator_working(
    make_app: AppFactory,
):
    app = make_app(
        KPSESSION_ROUTES_ENABLED=False,
        KPSESSION_HOOK_ENABLED=False,
        KPSESSION_CLEANUP_ENABLED=False,
    )
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("alice", "correct horse battery")
    _host_views(app, kp)
    queries = _session_queries(app)
    client = app.test_client()

    assert client.post("/auth/login").status_code == 404
    assert client.post("/my-login").status_code == 200
    before = len(queries)
    assert client.get("/auth/check").status_code == 404
    assert len(queries) == before  # no hook: nothing asked for a 404
    assert client.get("/me").get_json() == {"user": "alice"}
    assert not is_scheduled(app)


def test_routes_off_hook_and_job_on(make_app: AppFactory):
    app = make_app(KPSESSION_ROUTES_ENABLED=False, KPSESSION_CLEANUP_ENABLED=True)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("alice", "correct horse battery")
    _host_views(app, kp)
    queries = _session_queries(app)
    client = app.test_client()

    token = client.post("/my-login").get_json()["token"]
    assert is_scheduled(app)
    before = len(queries)
    response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.get_json() == {"user": "alice"}
    assert len(queries) == before + 1  # the hook's one lookup, nothing else

"""A user's sessions: listing, revoking, password change, signals and CLI."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_kpsession import (
    KPSession,
    NoSessionFoundError,
    UnknownUserError,
    UserSession,
    signals,
)
from flask_kpsession.clock import utcnow

from .conftest import AppFactory

ADDR = "203.0.113.7"


def _login(app: Flask, user, agent: str, addr: str = "127.0.0.1") -> FlaskClient:
    client = app.test_client()
    response = client.post(
        "/auth/login",
        json={"username": user[0], "password": user[1]},
        headers={"User-Agent": agent},
        environ_base={"REMOTE_ADDR": addr},
    )
    assert response.status_code == 200
    return client


def test_list_sessions_newest_use_first_with_public_fields(app: Flask, kp: KPSession):
    with app.app_context():
        first = kp.generate_session(ADDR, "alice")
        time.sleep(0.01)
        second = kp.generate_session("198.51.100.1", "alice")
        kp.generate_session(ADDR, "bob")
        time.sleep(0.01)
        kp.use_session(ADDR, first.token)
        listed = kp.list_sessions("alice")

    assert [s.id for s in listed] == [first.id, second.id]
    assert all(s.token is None for s in listed)
    assert listed[1].addr == "198.51.100.1"
    assert listed[0].expires_at == listed[0].last_used_at + timedelta(minutes=120)
    assert first.id != first.token


def test_list_sessions_leaves_out_timed_out_ones(app: Flask, kp: KPSession):
    long_ago = utcnow() - timedelta(hours=5)
    with app.app_context():
        kp.add_session(
            UserSession(
                ADDR, "a" * 43, "alice", created_at=long_ago, last_used_at=long_ago
            )
        )
        live = kp.generate_session(ADDR, "alice")
        assert [s.id for s in kp.list_sessions("alice")] == [live.id]


def test_revoke_session_by_public_id(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        assert kp.revoke_session(made.id) is True
        assert kp.revoke_session(made.id) is False
        assert kp.revoke_session("no-such-id") is False
        assert kp.session_exists(ADDR, made.token) is False


def test_the_public_id_is_no_token(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        assert kp.session_exists(ADDR, made.id) is False


def test_revoke_user_sessions_keeps_the_named_one(app: Flask, kp: KPSession):
    with app.app_context():
        keep = kp.generate_session(ADDR, "alice")
        kp.generate_session(ADDR, "alice")
        kp.generate_session(ADDR, "alice")
        other = kp.generate_session(ADDR, "bob")
        assert kp.revoke_user_sessions("alice", keep_token=keep.token) == 2
        assert [s.id for s in kp.list_sessions("alice")] == [keep.id]
        assert kp.revoke_user_sessions("alice") == 1
        assert kp.session_exists(ADDR, other.token)


def test_change_password_revokes_every_other_session(app: Flask, kp: KPSession, user):
    with app.app_context():
        keep = kp.generate_session(ADDR, "alice")
        kp.generate_session(ADDR, "alice")
        assert kp.change_password("alice", "a brand new password", keep.token) == 1
        assert [s.id for s in kp.list_sessions("alice")] == [keep.id]
        with pytest.raises(UnknownUserError):
            kp.change_password("nobody", "a brand new password")
    old = app.test_client().post(
        "/auth/login", json={"username": "alice", "password": user[1]}
    )
    new = app.test_client().post(
        "/auth/login", json={"username": "alice", "password": "a brand new password"}
    )
    assert (old.status_code, new.status_code) == (401, 200)


def test_get_sessions_route_marks_the_current_one(app: Flask, user):
    phone = _login(app, user, "Phone/1.0", addr="198.51.100.1")
    laptop = _login(app, user, "Laptop/2.0")

    response = laptop.get("/auth/sessions")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    entries = response.get_json()["sessions"]
    assert [e["user_agent"] for e in entries] == ["Laptop/2.0", "Phone/1.0"]
    assert [e["current"] for e in entries] == [True, False]
    assert set(entries[0]) == {
        "id",
        "addr",
        "user_agent",
        "created_at",
        "last_used_at",
        "expires_at",
        "current",
    }
    assert entries[1]["addr"] == "198.51.100.1"
    phone_view = phone.get(
        "/auth/sessions", environ_base={"REMOTE_ADDR": "198.51.100.1"}
    ).get_json()["sessions"]
    assert [e["current"] for e in phone_view] == [False, True]


def test_get_sessions_needs_a_session(client: FlaskClient):
    assert client.get("/auth/sessions").status_code == 401


def test_delete_own_session_only(app: Flask, kp: KPSession, user):
    laptop = _login(app, user, "Laptop")
    phone = _login(app, user, "Phone")
    with app.app_context():
        kp.create_user("mallory", "mallory's password")
        mallory_session = kp.generate_session("127.0.0.1", "mallory")

    entries = laptop.get("/auth/sessions").get_json()["sessions"]
    phone_id = next(e["id"] for e in entries if e["user_agent"] == "Phone")

    foreign = laptop.delete(f"/auth/sessions/{mallory_session.id}")
    assert foreign.status_code == 404
    assert foreign.get_json()["error"] == "not_found"
    with app.app_context():
        assert kp.session_exists("127.0.0.1", mallory_session.token)

    revoked = laptop.delete(f"/auth/sessions/{phone_id}")
    assert revoked.status_code == 200
    assert revoked.get_json() == {"revoked": True}
    assert "Set-Cookie" not in revoked.headers  # not the current session
    assert phone.get("/auth/check").status_code == 401
    assert laptop.get("/auth/check").status_code == 200
    assert laptop.delete(f"/auth/sessions/{phone_id}").status_code == 404


def test_deleting_the_current_session_clears_the_cookie(app: Flask, user):
    laptop = _login(app, user, "Laptop")
    own = laptop.get("/auth/sessions").get_json()["sessions"][0]["id"]
    response = laptop.delete(f"/auth/sessions/{own}")
    assert response.status_code == 200
    assert response.headers["Set-Cookie"].startswith("kp_session=;")
    assert laptop.get("/auth/check").status_code == 401


@pytest.mark.parametrize("keep_current", [True, False])
def test_logout_all(app: Flask, user, keep_current: bool):
    others = [_login(app, user, f"Device {n}") for n in range(3)]
    current = _login(app, user, "This one")

    response = current.post("/auth/logout-all", json={"keep_current": keep_current})
    assert response.status_code == 200
    assert response.get_json() == {"revoked": 3 if keep_current else 4}
    assert all(o.get("/auth/check").status_code == 401 for o in others)
    assert current.get("/auth/check").status_code == (200 if keep_current else 401)


def test_logout_all_without_a_body_ends_everything(app: Flask, user):
    current = _login(app, user, "This one")
    response = current.post("/auth/logout-all")
    assert response.get_json() == {"revoked": 1}
    assert response.headers["Set-Cookie"].startswith("kp_session=;")


@pytest.mark.parametrize(
    "body", [{"keep_current": "maybe"}, {"keep_current": 3}, ["keep_current"]]
)
def test_logout_all_refuses_a_malformed_body(app: Flask, user, body):
    current = _login(app, user, "This one")
    response = current.post("/auth/logout-all", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert current.get("/auth/check").status_code == 200


def test_signals_report_the_lifecycle(make_app: AppFactory):
    app = make_app(KPSESSION_TIMEOUT=timedelta(seconds=1))
    kp: KPSession = app.extensions["kpsession"]
    seen: list[tuple[str, str | None, object]] = []

    def recorder(name: str):
        def receive(sender, session=None, reason=None, count=None, addr=None):
            assert sender is app
            seen.append((name, reason or addr, session.uname if session else count))

        return receive

    receivers = {
        signal: recorder(name)
        for name, signal in [
            ("created", signals.session_created),
            ("refreshed", signals.session_refreshed),
            ("removed", signals.session_removed),
            ("mismatch", signals.address_mismatch),
            ("purged", signals.purge_finished),
        ]
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, app)
    try:
        with app.app_context():
            a = kp.generate_session(ADDR, "alice")
            kp.use_session(ADDR, a.token)
            kp.session_exists("192.0.2.1", a.token)
            kp.remove_session(ADDR, a.token)
            b = kp.generate_session(ADDR, "bob")
            kp.revoke_session(b.id)
            c = kp.generate_session(ADDR, "carol")
            time.sleep(1.1)
            with pytest.raises(NoSessionFoundError):
                kp.get_session(ADDR, c.token)
            kp.generate_session(ADDR, "dave")
            time.sleep(1.1)
            kp.delete_timed_out_sessions()
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver, app)

    assert seen == [
        ("created", None, "alice"),
        ("refreshed", None, "alice"),
        ("mismatch", "192.0.2.1", "alice"),
        ("removed", "logout", "alice"),
        ("created", None, "bob"),
        ("removed", "revoked", "bob"),
        ("created", None, "carol"),
        ("removed", "idle", "carol"),
        ("created", None, "dave"),
        ("purged", None, 1),
    ]


def test_cli_sessions_revoke_and_stats(app: Flask, kp: KPSession):
    with app.app_context():
        a = kp.generate_session(ADDR, "alice")
        kp.generate_session(ADDR, "alice")
        kp.generate_session("198.51.100.1", "bob")
    runner = app.test_cli_runner()

    listed = runner.invoke(args=["kpsession", "sessions"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert len(lines) == 3
    assert sorted(line.split("\t")[1] for line in lines) == ["alice", "alice", "bob"]

    alice_only = runner.invoke(args=["kpsession", "sessions", "--user", "alice"])
    assert len(alice_only.output.strip().splitlines()) == 2
    assert a.token not in listed.output

    stats = runner.invoke(args=["kpsession", "stats"])
    assert "stored sessions: 3" in stats.output
    assert "live sessions: 3" in stats.output
    assert "users with a live session: 2" in stats.output

    revoked = runner.invoke(args=["kpsession", "revoke", a.id])
    assert revoked.exit_code == 0
    assert runner.invoke(args=["kpsession", "revoke", a.id]).exit_code == 1

    by_user = runner.invoke(args=["kpsession", "revoke-user", "alice"])
    assert by_user.output.strip() == "Revoked 1 session of 'alice'."
    with app.app_context():
        assert kp.list_sessions("alice") == []
        assert len(kp.list_sessions(None)) == 1

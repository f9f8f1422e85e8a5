"""OWASP ASVS session-management rows not already proven by a feature's own tests.

The README's "Security" section maps every requirement to its tests; these are
the ones that live nowhere else: token origin and pre-query checks, lookups
under the keyed hash only, password length before hashing, timeouts and address
binding on the request path, the start-up warning, the ``__Host-`` cookie end
to end, what the logs may carry and what an unexpected error shows.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from flask import Flask, jsonify
from sqlalchemy import event, exc, insert, select

from flask_kpsession import KPSession, login_required
from flask_kpsession import tokens as tokens_module
from flask_kpsession.clock import utcnow
from flask_kpsession.database import Database
from flask_kpsession.tokens import TokenHasher

from .conftest import AppFactory

PASSWORD = "correct horse battery"


def _with_user(app: Flask, name: str = "alice") -> KPSession:
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user(name, PASSWORD)
    return kp


def _login(client, name: str = "alice", password: str = PASSWORD, **kwargs):
    return client.post(
        "/auth/login", json={"username": name, "password": password}, **kwargs
    )


def _statements(app: Flask) -> list[str]:
    kp: KPSession = app.extensions["kpsession"]
    seen: list[str] = []
    with app.app_context():
        engine = kp.db().engine

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen


# -- tokens --------------------------------------------------------------------------


def test_tokens_come_from_the_csprng_with_256_bits(
    app: Flask, monkeypatch: pytest.MonkeyPatch
):
    drawn: list[tuple[int, str]] = []
    original = secrets.token_urlsafe

    def recording(nbytes: int) -> str:
        value = original(nbytes)
        drawn.append((nbytes, value))
        return value

    monkeypatch.setattr(tokens_module.secrets, "token_urlsafe", recording)
    _with_user(app)
    token = _login(app.test_client()).get_json()["token"]

    assert [nbytes for nbytes, value in drawn if value == token] == [32]


@pytest.mark.parametrize(
    "token",
    [
        "short",
        "x" * 257,
        "a" * 10_000,
        "bad token with spaces and more of it",
        "é" * 43,
    ],
)
def test_malformed_and_oversized_tokens_never_reach_the_database(
    app: Flask, token: str
):
    seen = _statements(app)
    client = app.test_client(use_cookies=False)

    bearer = client.get("/auth/check", headers={"Authorization": f"Bearer {token}"})
    cookie = client.get("/auth/check", headers={"Cookie": f"kp_session={token}"})
    assert bearer.status_code == cookie.status_code == 401
    assert [s for s in seen if "kp_sessions" in s] == []


def test_no_unkeyed_or_plaintext_lookup_when_a_key_is_set(app: Flask):
    kp: KPSession = app.extensions["kpsession"]
    token = secrets.token_urlsafe(32)
    unkeyed = hashlib.sha256(token.encode()).digest()
    plain = token.encode()[:32]
    with app.app_context():
        table = kp.db().metadata.tables["kp_sessions"]
        with kp.db().engine.begin() as conn:
            for index, stored in enumerate((unkeyed, plain)):
                conn.execute(
                    insert(table).values(
                        token_hash=stored,
                        public_id=f"planted{index}",
                        uname="mallory",
                        addr="127.0.0.1",
                        user_agent="",
                        created_at=utcnow(),
                        last_used_at=utcnow(),
                    )
                )
        assert not kp.session_exists("127.0.0.1", token)
    response = app.test_client(use_cookies=False).get(
        "/auth/check", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert TokenHasher([app.config["SECRET_KEY"]]).digest(token) not in (
        unkeyed,
        plain,
    )


# -- passwords -----------------------------------------------------------------------


def test_an_over_long_password_is_refused_before_any_hashing(
    app: Flask, monkeypatch: pytest.MonkeyPatch
):
    _with_user(app)
    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, stored: str, password: str) -> bool:
        calls.append(stored)
        return original(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    response = _login(app.test_client(), password="p" * 1025)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert calls == []


# -- timeouts and address binding on the request path --------------------------------


def test_the_absolute_timeout_ends_an_active_session_on_the_request_path(
    make_app: AppFactory,
):
    app = make_app(
        KPSESSION_ABSOLUTE_TIMEOUT=timedelta(seconds=1),
        KPSESSION_REFRESH_THROTTLE=timedelta(0),
    )
    _with_user(app)
    client = app.test_client()
    _login(client)
    for _ in range(2):
        assert client.get("/auth/check").status_code == 200
        time.sleep(0.3)
    time.sleep(0.5)
    assert client.get("/auth/check").status_code == 401


def test_a_foreign_request_neither_refreshes_nor_deletes_the_session(
    make_app: AppFactory,
):
    app = make_app(KPSESSION_REFRESH_THROTTLE=timedelta(0))
    kp = _with_user(app)
    token = _login(app.test_client()).get_json()["token"]
    with app.app_context():
        before = kp.get_session("127.0.0.1", token).last_used_at

    time.sleep(0.01)
    stranger = app.test_client(use_cookies=False)
    headers = {"Authorization": f"Bearer {token}"}
    foreign = {"REMOTE_ADDR": "198.51.100.20"}
    assert (
        stranger.get("/auth/check", headers=headers, environ_base=foreign).status_code
        == 401
    )
    stranger.post("/auth/logout", headers=headers, environ_base=foreign)

    with app.app_context():
        after = kp.get_session("127.0.0.1", token)
    assert after.last_used_at == before


# -- cookies -------------------------------------------------------------------------


def test_a_startup_warning_outside_debug_when_secure_is_not_forced(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="flask_kpsession")

    def warned() -> bool:
        found = any("KPSESSION_COOKIE_SECURE" in r.getMessage() for r in caplog.records)
        caplog.clear()
        return found

    make_app(TESTING=False)
    assert warned()
    make_app(TESTING=False, KPSESSION_COOKIE_SECURE=True)
    assert not warned()
    make_app(TESTING=False, DEBUG=True)
    assert not warned()


def test_the_host_prefixed_cookie_end_to_end(make_app: AppFactory):
    app = make_app(KPSESSION_COOKIE_HOST_PREFIX=True, KPSESSION_COOKIE_SECURE=True)
    _with_user(app)
    client = app.test_client()
    https = "https://localhost"

    login = _login(client, base_url=https)
    header = login.headers["Set-Cookie"]
    assert header.startswith("__Host-kp_session=")
    assert "; Secure" in header and "; Path=/" in header and "Domain" not in header
    assert client.get_cookie("kp_session") is None

    assert client.get("/auth/check", base_url=https).get_json()["username"] == "alice"
    logout = client.post("/auth/logout", base_url=https)
    assert logout.get_json() == {"logged_out": True}
    assert logout.headers["Set-Cookie"].startswith("__Host-kp_session=;")
    assert client.get("/auth/check", base_url=https).status_code == 401


# -- logs ----------------------------------------------------------------------------


def test_logs_carry_no_token_password_or_full_hash(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    app = make_app(KPSESSION_LOGIN_PAIR_LIMIT=2, KPSESSION_CSRF_DOUBLE_SUBMIT=True)
    kp = _with_user(app)
    client = app.test_client()

    _login(client, password="wrong guess one")
    token = _login(client).get_json()["token"]
    csrf = client.get_cookie("kp_session_csrf")
    assert csrf is not None
    client.get("/auth/check")
    client.get("/auth/check", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    client.post("/auth/logout", headers={"Origin": "https://evil.example"})
    client.post("/auth/logout", headers={"X-CSRF-Token": csrf.value})
    for _ in range(3):
        _login(client, password="wrong guess two")

    with app.app_context():
        users = kp.db().metadata.tables["kp_users"]
        with kp.db().engine.connect() as conn:
            password_hash = conn.execute(select(users.c.password_hash)).scalar_one()
    token_hash = TokenHasher([app.config["SECRET_KEY"]]).digest(token)

    text = caplog.text
    assert "failed login" in text and "refused" in text  # the flow was logged
    for secret in (
        token,
        PASSWORD,
        "wrong guess one",
        "wrong guess two",
        csrf.value,
        password_hash,
        password_hash.split("$")[-1],
        token_hash.hex(),
    ):
        assert secret not in text


def test_failed_logins_are_logged_with_username_and_address(
    app: Flask, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="flask_kpsession")
    _with_user(app)
    _login(
        app.test_client(), password="nope", environ_base={"REMOTE_ADDR": "203.0.113.5"}
    )
    _login(
        app.test_client(), "ghost", "nope", environ_base={"REMOTE_ADDR": "203.0.113.6"}
    )

    failures = [
        r.getMessage() for r in caplog.records if "failed login" in r.getMessage()
    ]
    assert failures == [
        "failed login for 'alice' from 203.0.113.5",
        "failed login for 'ghost' from 203.0.113.6",
    ]


# -- errors --------------------------------------------------------------------------


def test_an_unexpected_database_error_shows_no_sql_or_trace(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    _with_user(app)

    @app.get("/private")
    @login_required
    def private():
        return jsonify(ok=True)

    def broken(self: Database, work, commit: bool = True):
        raise exc.ProgrammingError(
            "SELECT token_hash FROM kp_sessions WHERE secret = 1",
            {"secret": "parameter value"},
            Exception("(1064) You have an error in your SQL syntax"),
        )

    monkeypatch.setattr(Database, "run", broken)
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    bearer = {"Authorization": "Bearer " + "A" * 43}
    responses = [
        _login(client),
        client.get("/auth/check", headers=bearer),
        client.get("/private", headers=bearer),
        client.post("/auth/logout", headers=bearer),
    ]
    # A route's own statement fails with a 500; the token check, which cannot
    # tell whether the session is live, answers as in an outage.
    assert [r.status_code for r in responses] == [500, 503, 503, 500]
    for response in responses:
        assert response.get_json()["error"] in ("internal_error", "unavailable")
        assert set(response.get_json()) == {"error", "message"}
        body = response.get_data(as_text=True)
        for leak in ("SELECT", "kp_sessions", "Traceback", "1064", "parameter value"):
            assert leak not in body
    assert "You have an error in your SQL syntax" in caplog.text  # logged...
    assert "parameter value" not in caplog.text  # ...without the parameters

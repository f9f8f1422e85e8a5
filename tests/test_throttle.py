"""Failed-login throttling: the three limits, the 429 answer, and no lockout."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from flask_kpsession import InvalidCredentialsError, KPSession, LoginThrottledError
from flask_kpsession.throttle import address_key

from .conftest import AppFactory

PASSWORD = "correct horse battery"
HOME = "127.0.0.1"


def _attempt(client: FlaskClient, username: str, password: str, addr: str = HOME):
    return client.post(
        "/auth/login",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": addr},
    )


def _fail(client: FlaskClient, username: str, times: int, addr: str = HOME) -> None:
    for _ in range(times):
        assert _attempt(client, username, "wrong", addr).status_code == 401


def _add_user(app: Flask, username: str = "alice") -> None:
    with app.app_context():
        app.extensions["kpsession"].create_user(username, PASSWORD)


def _rows(app: Flask, table_name: str) -> int:
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        table = kp.db().metadata.tables[table_name]
        with kp.db().engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar())


def test_ten_failures_lock_the_pair_for_right_and_wrong_passwords(app: Flask):
    _add_user(app)
    client = app.test_client()
    _fail(client, "alice", 10)

    wrong = _attempt(client, "alice", "wrong")
    right = _attempt(client, "alice", PASSWORD)
    for response in (wrong, right):
        assert response.status_code == 429
        assert response.get_json() == {
            "error": "too_many_attempts",
            "message": "Too many failed logins; try again later.",
        }
        assert 0 < int(response.headers["Retry-After"]) <= 300
        assert response.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in response.headers


def test_the_throttled_answer_is_the_same_for_known_and_unknown_users(app: Flask):
    _add_user(app)
    client = app.test_client()
    _fail(client, "alice", 10)
    _fail(client, "nobody", 10)

    known = _attempt(client, "alice", "wrong")
    unknown = _attempt(client, "nobody", "wrong")
    assert known.status_code == unknown.status_code == 429
    assert known.get_data() == unknown.get_data()
    delay = int(known.headers["Retry-After"]) - int(unknown.headers["Retry-After"])
    assert abs(delay) <= 1
    assert set(known.headers.keys()) == set(unknown.headers.keys())


def test_a_throttled_attempt_costs_no_password_check(
    app: Flask, monkeypatch: pytest.MonkeyPatch
):
    _add_user(app)
    client = app.test_client()
    _fail(client, "alice", 10)
    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, stored: str, password: str) -> bool:
        calls.append(stored)
        return original(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    assert _attempt(client, "alice", PASSWORD).status_code == 429
    assert calls == []
    assert _attempt(client, "nobody", "wrong").status_code == 401
    assert len(calls) == 1  # the unthrottled attempt is checked as before


def test_the_pair_limit_leaves_other_addresses_alone(app: Flask):
    _add_user(app)
    client = app.test_client()
    _fail(client, "alice", 10, addr="192.0.2.1")

    assert _attempt(client, "alice", "wrong", "192.0.2.1").status_code == 429
    assert _attempt(client, "alice", PASSWORD).status_code == 200


def test_the_address_limit_covers_every_username_from_that_address(
    make_app: AppFactory,
):
    app = make_app(KPSESSION_LOGIN_PAIR_LIMIT=3, KPSESSION_LOGIN_ADDRESS_LIMIT=5)
    _add_user(app)
    client = app.test_client()
    for name in ("u1", "u2", "u3", "u4", "u5"):
        _fail(client, name, 1, addr="198.51.100.7")

    blocked = _attempt(client, "alice", PASSWORD, "198.51.100.7")
    assert blocked.status_code == 429
    assert _attempt(client, "alice", PASSWORD, "198.51.100.8").status_code == 200


def test_a_stranger_cannot_lock_a_user_out_from_the_users_own_address(
    make_app: AppFactory,
):
    app = make_app(KPSESSION_LOGIN_PAIR_LIMIT=3, KPSESSION_LOGIN_USER_LIMIT=6)
    _add_user(app)
    client = app.test_client()
    assert _attempt(client, "alice", PASSWORD).status_code == 200  # her address

    # A stranger spreads guesses over addresses until every limit is reached.
    stranger = app.test_client(use_cookies=False)
    for host in range(1, 3):
        _fail(stranger, "alice", 3, addr=f"203.0.113.{host}")
        blocked = _attempt(stranger, "alice", "x", f"203.0.113.{host}")
        assert blocked.status_code == 429
    assert _attempt(stranger, "alice", PASSWORD, "203.0.113.50").status_code == 429

    # From her own address only her own failures count.
    assert _attempt(client, "alice", PASSWORD).status_code == 200
    _fail(client, "alice", 2)
    assert _attempt(client, "alice", PASSWORD).status_code == 200


def test_without_trust_the_user_limit_applies_everywhere(make_app: AppFactory):
    app = make_app(KPSESSION_LOGIN_PAIR_LIMIT=3, KPSESSION_LOGIN_USER_LIMIT=6)
    _add_user(app)
    client = app.test_client()
    for host in range(1, 3):
        _fail(client, "alice", 3, addr=f"203.0.113.{host}")

    assert _attempt(client, "alice", PASSWORD).status_code == 429


def test_ipv6_addresses_count_per_64(make_app: AppFactory):
    app = make_app(KPSESSION_LOGIN_PAIR_LIMIT=3)
    _add_user(app)
    client = app.test_client()
    for host in range(1, 4):
        _fail(client, "alice", 1, addr=f"2001:db8:0:1::{host}")

    assert _attempt(client, "alice", PASSWORD, "2001:db8:0:1::99").status_code == 429
    assert _attempt(client, "alice", PASSWORD, "2001:db8:0:2::1").status_code == 200
    assert address_key("2001:db8:0:1::99") == "2001:db8:0:1::/64"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("not an address").startswith("?")


def test_the_throttle_holds_across_workers_and_restarts(make_app: AppFactory):
    first = make_app(KPSESSION_LOGIN_PAIR_LIMIT=3)
    _add_user(first)
    _fail(first.test_client(), "alice", 3)

    # Another process, or the same one restarted: only the database is shared.
    second = make_app(KPSESSION_LOGIN_PAIR_LIMIT=3)
    assert _attempt(second.test_client(), "alice", PASSWORD).status_code == 429


def test_the_limit_lifts_when_the_window_has_passed(make_app: AppFactory):
    app = make_app(
        KPSESSION_LOGIN_PAIR_LIMIT=2, KPSESSION_LOGIN_PAIR_WINDOW=timedelta(seconds=1)
    )
    _add_user(app)
    client = app.test_client()
    _fail(client, "alice", 2)
    refused = _attempt(client, "alice", PASSWORD)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"

    time.sleep(1.05)
    assert _attempt(client, "alice", PASSWORD).status_code == 200


def test_a_success_forgets_the_failures_of_the_pair(make_app: AppFactory):
    app = make_app(KPSESSION_LOGIN_PAIR_LIMIT=3)
    _add_user(app)
    client = app.test_client()
    _fail(client, "alice", 2)
    assert _attempt(client, "alice", PASSWORD).status_code == 200
    _fail(client, "alice", 2)
    assert _attempt(client, "alice", PASSWORD).status_code == 200


def test_the_throttle_can_be_switched_off(make_app: AppFactory):
    app = make_app(KPSESSION_LOGIN_THROTTLE=False, KPSESSION_LOGIN_PAIR_LIMIT=2)
    _add_user(app)
    client = app.test_client()
    _fail(client, "alice", 4)
    assert _attempt(client, "alice", PASSWORD).status_code == 200
    assert _rows(app, "kp_login_failures") == 0


def test_failures_are_stored_without_the_username(app: Flask):
    client = app.test_client()
    _fail(client, "secret-looking-name", 2)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        table = kp.db().metadata.tables["kp_login_failures"]
        with kp.db().engine.connect() as conn:
            rows = conn.execute(select(table)).all()
    assert len(rows) == 2
    for row in rows:
        assert b"secret-looking-name" not in bytes(row.uname_key)
        assert len(row.uname_key) == 32
        assert row.addr_key == HOME


def test_the_purge_deletes_old_throttle_rows(make_app: AppFactory):
    short = timedelta(seconds=1)
    app = make_app(
        KPSESSION_LOGIN_PAIR_WINDOW=short,
        KPSESSION_LOGIN_ADDRESS_WINDOW=short,
        KPSESSION_LOGIN_USER_WINDOW=short,
        KPSESSION_LOGIN_TRUST_PERIOD=short,
    )
    _add_user(app)
    client = app.test_client()
    assert _attempt(client, "alice", PASSWORD).status_code == 200
    _fail(client, "bob", 3)
    assert _rows(app, "kp_login_failures") == 3
    assert _rows(app, "kp_login_trust") == 1

    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.delete_timed_out_sessions()
    assert _rows(app, "kp_login_failures") == 3  # still inside their window

    time.sleep(1.05)
    _fail(client, "carol", 1)
    with app.app_context():
        kp.delete_timed_out_sessions()
    assert _rows(app, "kp_login_failures") == 1  # carol's, still recent
    assert _rows(app, "kp_login_trust") == 0


def test_log_in_raises_the_throttle_error_for_host_login_views(
    make_app: AppFactory,
):
    app = make_app(KPSESSION_LOGIN_PAIR_LIMIT=2)
    _add_user(app)
    _fail(app.test_client(), "alice", 2)
    kp: KPSession = app.extensions["kpsession"]
    with app.test_request_context(
        "/login", method="POST", environ_base={"REMOTE_ADDR": HOME}
    ):
        with pytest.raises(LoginThrottledError) as caught:
            kp.log_in("alice", PASSWORD)
    assert isinstance(caught.value, InvalidCredentialsError)
    assert 0 < caught.value.retry_after <= 300

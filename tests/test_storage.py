"""What lands in the database and the logs: hashes only, never a token."""

from __future__ import annotations

import hashlib
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from flask_kpsession import KPSession, UserSession
from flask_kpsession.clock import utcnow
from flask_kpsession.tokens import TokenHasher, is_well_formed

from .conftest import AppFactory


def _dump(app: Flask, kp: KPSession) -> str:
    """Every value of every extension table, as text and as hex."""
    parts: list[str] = []
    with app.app_context(), kp.db().engine.connect() as conn:
        for name in ("kp_sessions", "kp_users"):
            table = kp.db().metadata.tables[name]
            for row in conn.execute(select(table)).all():
                for value in row:
                    parts.append(
                        value.hex() if isinstance(value, bytes) else str(value)
                    )
                    if isinstance(value, bytes):
                        parts.append(value.decode("latin-1"))
    return "\n".join(parts)


def test_tokens_are_long_random_and_url_safe(app: Flask, kp: KPSession):
    with app.app_context():
        tokens = {kp.generate_session("127.0.0.1", "alice").token for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert token is not None and is_well_formed(token)
        assert len(token) >= 43  # 32 bytes of CSPRNG output: 256 bits


def test_the_plaintext_token_is_nowhere_in_the_database_or_logs(
    app: Flask, kp: KPSession, user, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    token = client.post(
        "/auth/login", json={"username": user[0], "password": user[1]}
    ).get_json()["token"]
    client.get("/auth/check")
    client.get("/auth/check", environ_base={"REMOTE_ADDR": "192.0.2.1"})

    dump = _dump(app, kp)
    assert token not in dump
    assert user[1] not in dump
    assert token not in caplog.text
    assert user[1] not in caplog.text


def test_the_stored_key_is_an_hmac_under_the_secret_key(app: Flask, kp: KPSession):
    with app.app_context():
        session = kp.generate_session("127.0.0.1", "alice")
        table = kp.db().metadata.tables["kp_sessions"]
        with kp.db().engine.connect() as conn:
            stored = conn.execute(select(table.c.token_hash)).scalar_one()
    assert session.token is not None
    assert stored == TokenHasher([app.config["SECRET_KEY"]]).digest(session.token)
    assert stored != hashlib.sha256(session.token.encode()).digest()
    assert len(stored) == 32


def test_without_a_secret_key_hashes_are_sha256_with_one_warning(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="flask_kpsession")
    app = make_app(SECRET_KEY=None)
    warnings = [r for r in caplog.records if "SECRET_KEY" in r.getMessage()]
    assert len(warnings) == 1
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        session = kp.generate_session("127.0.0.1", "alice")
        table = kp.db().metadata.tables["kp_sessions"]
        with kp.db().engine.connect() as conn:
            stored = conn.execute(select(table.c.token_hash)).scalar_one()
    assert session.token is not None
    assert stored == hashlib.sha256(session.token.encode()).digest()


def test_a_rotated_secret_key_still_finds_sessions_through_the_fallbacks(
    make_app: AppFactory, backend
):
    old_app = make_app(SECRET_KEY="the old secret key of this deployment")
    kp: KPSession = old_app.extensions["kpsession"]
    with old_app.app_context():
        token = kp.generate_session("127.0.0.1", "alice").token

    new_app = make_app(
        SECRET_KEY="the new secret key of this deployment",
        SECRET_KEY_FALLBACKS=["the old secret key of this deployment"],
    )
    new_kp: KPSession = new_app.extensions["kpsession"]
    with new_app.app_context():
        assert new_kp.get_session("127.0.0.1", token).uname == "alice"
        table = new_kp.db().metadata.tables["kp_sessions"]
        with new_kp.db().engine.connect() as conn:
            stored = conn.execute(select(table.c.token_hash)).scalar_one()
    key = hmac.new(
        b"the new secret key of this deployment",
        b"flask-kpsession token hash v1",
        hashlib.sha256,
    ).digest()
    assert stored == hmac.new(key, token.encode(), hashlib.sha256).digest()

    unrelated = make_app(SECRET_KEY="a third key that never signed anything")
    with unrelated.app_context():
        assert not unrelated.extensions["kpsession"].session_exists("127.0.0.1", token)


OLD_KEY = "the old secret key of this deployment"
NEW_KEY = "the new secret key of this deployment"


def _sessions_under_the_old_key(make_app: AppFactory, count: int) -> list[str]:
    """Store sessions under the old key, last used two minutes ago (refresh due)."""
    old_app = make_app(SECRET_KEY=OLD_KEY)
    kp: KPSession = old_app.extensions["kpsession"]
    two_minutes_ago = utcnow() - timedelta(minutes=2)
    tokens = []
    with old_app.app_context():
        for n in range(count):
            session = UserSession(
                "127.0.0.1",
                f"{n:02d}" + "r" * 41,
                "alice",
                created_at=two_minutes_ago,
                last_used_at=two_minutes_ago,
            )
            kp.add_session(session)
            tokens.append(session.token)
    return tokens


def _rotated(make_app: AppFactory) -> Flask:
    return make_app(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY])


def test_after_a_rotation_every_operation_works_on_the_first_use(make_app: AppFactory):
    """A row found under a fallback key is moved and then addressed by the new one."""
    checked, removed, used = _sessions_under_the_old_key(make_app, 3)
    app = _rotated(make_app)
    kp: KPSession = app.extensions["kpsession"]
    bearer = {"Authorization": f"Bearer {checked}"}

    first = app.test_client().get("/auth/check", headers=bearer)
    assert first.status_code == 200
    assert datetime.fromisoformat(first.get_json()["last_used_at"]) > utcnow() - (
        timedelta(seconds=30)
    )  # the due refresh happened, under the new key
    with app.app_context():
        assert kp.remove_session("127.0.0.1", removed) is True
        assert kp.session_exists("127.0.0.1", removed) is False
        assert kp.use_session("127.0.0.1", used) is True
        assert kp.session_exists("127.0.0.1", used) is True


def test_after_a_rotation_parallel_first_requests_all_succeed(make_app: AppFactory):
    tokens = _sessions_under_the_old_key(make_app, 3)
    app = _rotated(make_app)

    def check(token: str) -> int:
        client = app.test_client(use_cookies=False)
        headers = {"Authorization": f"Bearer {token}"}
        return client.get("/auth/check", headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(check, [t for t in tokens for _ in range(8)]))
    assert statuses == [200] * 24

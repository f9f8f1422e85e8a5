"""``SECRET_KEY``: keyed hashes with it, plain SHA-256 and one WARNING without."""

from __future__ import annotations

import hashlib
import logging

import pytest
from flask import Flask
from sqlalchemy import select

from flask_kpsession import ConfigurationError, KPSession

from .conftest import AppFactory


def _stored_hash(app: Flask) -> bytes:
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        table = kp.db().metadata.tables["kp_sessions"]
        with kp.db().engine.connect() as conn:
            stored: bytes = conn.execute(select(table.c.token_hash)).scalar_one()
    return stored


def _key_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and "SECRET_KEY" in record.getMessage()
    ]


@pytest.mark.parametrize("missing", [None, ""])
def test_without_a_key_one_warning_however_many_requests(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture, missing
):
    caplog.set_level(logging.DEBUG, logger="flask_kpsession")
    app = make_app(SECRET_KEY=missing)
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("alice", "correct horse battery")
    client = app.test_client()
    for _ in range(3):
        login = client.post(
            "/auth/login",
            json={"username": "alice", "password": "correct horse battery"},
        )
        assert login.status_code == 200
        assert client.get("/auth/check").status_code == 200

    assert len(_key_warnings(caplog)) == 1
    token = login.get_json()["token"]
    assert _stored_hash(app) == hashlib.sha256(token.encode()).digest()


def test_with_a_key_there_is_no_warning_and_the_hash_is_keyed(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="flask_kpsession")
    app = make_app(SECRET_KEY=b"a bytes secret key works as well as text")
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        token = kp.generate_session("127.0.0.1", "alice").token
        assert kp.session_exists("127.0.0.1", token)
    assert token is not None
    assert _key_warnings(caplog) == []
    assert _stored_hash(app) != hashlib.sha256(token.encode()).digest()


def test_the_key_is_read_once_at_init_app(make_app: AppFactory):
    app = make_app(SECRET_KEY="the key in force when the extension started")
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        token = kp.generate_session("127.0.0.1", "alice").token
    app.config["SECRET_KEY"] = "a key set afterwards changes nothing"
    with app.app_context():
        assert kp.session_exists("127.0.0.1", token)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"SECRET_KEY": 12345}, "SECRET_KEY"),
        ({"SECRET_KEY": ["a", "list"]}, "SECRET_KEY"),
        ({"SECRET_KEY_FALLBACKS": "one old key"}, "SECRET_KEY_FALLBACKS"),
        ({"SECRET_KEY_FALLBACKS": [b"ok", 7]}, "SECRET_KEY_FALLBACKS"),
    ],
)
def test_a_key_of_the_wrong_type_is_a_configuration_error(
    make_app: AppFactory, config, named
):
    with pytest.raises(ConfigurationError) as caught:
        make_app(**config)
    message = str(caught.value)
    assert named in message
    assert "expected" in message
    assert "one old key" not in message  # key material is never echoed

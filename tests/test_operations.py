"""The eight session operations of the seed, on both backends."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from flask import Flask
from sqlalchemy import select, update

from flask_kpsession import (
    DuplicateSessionError,
    KPSession,
    NoSessionFoundError,
    UserSession,
)
from flask_kpsession.clock import utcnow

from .conftest import AppFactory

ADDR = "203.0.113.7"
OTHER = "198.51.100.9"
TOKEN = "T" * 43


def test_generate_then_get_returns_the_stored_session(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        found = kp.get_session(ADDR, made.token)

    assert made.token is not None and len(made.token) >= 43
    assert found.uname == "alice"
    assert found.addr == ADDR
    assert found.token == made.token
    assert found.id == made.id and found.id != made.token
    assert found.created_at == made.created_at
    assert found.created_at.tzinfo is not None
    assert found.created_at.utcoffset() == timedelta(0)
    assert found.expires_at == found.last_used_at + timedelta(minutes=120)


def test_timestamps_keep_microseconds(app: Flask, kp: KPSession):
    moment = utcnow().replace(microsecond=123456)
    with app.app_context():
        kp.add_session(
            UserSession(ADDR, TOKEN, "alice", created_at=moment, last_used_at=moment)
        )
        found = kp.get_session(ADDR, TOKEN)

    assert found.created_at == moment
    assert found.last_used_at.microsecond == 123456


def test_get_unknown_token_raises(app: Flask, kp: KPSession):
    with app.app_context(), pytest.raises(NoSessionFoundError):
        kp.get_session(ADDR, TOKEN)


@pytest.mark.parametrize("token", ["", "short", "x" * 257, "é" * 40, "a b" * 20, None])
def test_malformed_tokens_are_simply_not_found(app: Flask, kp: KPSession, token):
    with app.app_context():
        assert kp.session_exists(ADDR, token) is False
        assert kp.use_session(ADDR, token) is False
        assert kp.remove_session(ADDR, token) is False
        with pytest.raises(NoSessionFoundError):
            kp.get_session(ADDR, token)


def test_get_from_another_address_raises_and_keeps_the_session(
    app: Flask, kp: KPSession
):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        with pytest.raises(NoSessionFoundError):
            kp.get_session(OTHER, made.token)
        assert kp.session_exists(ADDR, made.token) is True


def test_add_refuses_duplicates(app: Flask, kp: KPSession):
    with app.app_context():
        kp.add_session(UserSession(ADDR, TOKEN, "alice"))
        with pytest.raises(DuplicateSessionError):
            kp.add_session(UserSession(OTHER, TOKEN, "bob"))
        assert kp.get_session(ADDR, TOKEN).uname == "alice"


@pytest.mark.parametrize(
    ("addr", "token", "uname"),
    [
        (ADDR, "short", "alice"),
        (ADDR, "T" * 300, "alice"),
        ("not an address", TOKEN, "alice"),
        ("1" * 46, TOKEN, "alice"),
        (ADDR, TOKEN, ""),
        (ADDR, TOKEN, "x" * 256),
    ],
)
def test_add_refuses_malformed_sessions(app: Flask, kp: KPSession, addr, token, uname):
    with app.app_context(), pytest.raises(ValueError):
        kp.add_session(UserSession(addr, token, uname))


def test_add_fills_in_the_stored_fields(app: Flask, kp: KPSession):
    session = UserSession(ADDR, TOKEN, "alice")
    with app.app_context():
        kp.add_session(session)

    assert session.id is not None
    assert session.created_at is not None
    assert session.last_used_at == session.created_at
    assert session.expires_at == session.created_at + timedelta(minutes=120)


def test_generate_retries_a_token_collision(
    app: Flask, kp: KPSession, monkeypatch: pytest.MonkeyPatch
):
    tokens = iter([TOKEN, TOKEN, "U" * 43])
    monkeypatch.setattr("flask_kpsession.store.new_token", lambda n: next(tokens))
    with app.app_context():
        first = kp.generate_session(ADDR, "alice")
        second = kp.generate_session(ADDR, "bob")

    assert first.token == TOKEN
    assert second.token == "U" * 43


def test_remove_deletes_once(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        assert kp.remove_session(ADDR, made.token) is True
        assert kp.remove_session(ADDR, made.token) is False
        assert kp.session_exists(ADDR, made.token) is False


def test_remove_from_a_foreign_address_deletes_nothing(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        assert kp.remove_session(OTHER, made.token) is False
        assert kp.session_exists(ADDR, made.token) is True


def test_use_refreshes_the_idle_clock(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        time.sleep(0.01)
        assert kp.use_session(ADDR, made.token) is True
        later = kp.get_session(ADDR, made.token)

    assert later.last_used_at > made.last_used_at
    assert later.created_at == made.created_at


def test_use_from_a_foreign_address_changes_nothing(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        assert kp.use_session(OTHER, made.token) is False
        assert kp.get_session(ADDR, made.token).last_used_at == made.last_used_at


def test_get_and_exists_never_refresh(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        time.sleep(0.01)
        kp.get_session(ADDR, made.token)
        assert kp.session_exists(ADDR, made.token) is True
        assert kp.get_session(ADDR, made.token).last_used_at == made.last_used_at


def _stored_count(app: Flask, kp: KPSession) -> int:
    with app.app_context():
        table = kp.db().metadata.tables["kp_sessions"]
        with kp.db().engine.connect() as conn:
            return len(conn.execute(select(table.c.public_id)).all())


def test_idle_timeout_with_short_real_timeouts(make_app: AppFactory):
    app = make_app(KPSESSION_TIMEOUT=timedelta(seconds=1))
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        assert kp.session_exists(ADDR, made.token) is True
        time.sleep(1.1)
        assert kp.session_exists(ADDR, made.token) is False
        assert kp.use_session(ADDR, made.token) is False
    assert _stored_count(app, kp) == 1  # exists and use delete nothing

    with app.app_context(), pytest.raises(NoSessionFoundError):
        kp.get_session(ADDR, made.token)
    assert _stored_count(app, kp) == 0  # get deletes the timed-out session


def test_use_keeps_a_session_alive_past_the_idle_timeout(make_app: AppFactory):
    app = make_app(KPSESSION_TIMEOUT=timedelta(seconds=1))
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        for _ in range(3):
            time.sleep(0.5)
            assert kp.use_session(ADDR, made.token) is True
        assert kp.get_session(ADDR, made.token).uname == "alice"


def test_absolute_timeout_ends_even_an_active_session(make_app: AppFactory):
    app = make_app(
        KPSESSION_TIMEOUT=timedelta(seconds=10),
        KPSESSION_ABSOLUTE_TIMEOUT=timedelta(seconds=1),
    )
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        assert made.expires_at == made.created_at + timedelta(seconds=1)
        time.sleep(0.6)
        assert kp.use_session(ADDR, made.token) is True
        time.sleep(0.6)
        assert kp.use_session(ADDR, made.token) is False
        with pytest.raises(NoSessionFoundError):
            kp.get_session(ADDR, made.token)


def test_absolute_timeout_can_be_disabled(make_app: AppFactory):
    app = make_app(KPSESSION_ABSOLUTE_TIMEOUT=None)
    kp: KPSession = app.extensions["kpsession"]
    long_ago = utcnow() - timedelta(days=400)
    with app.app_context():
        kp.add_session(
            UserSession(
                ADDR, TOKEN, "alice", created_at=long_ago, last_used_at=utcnow()
            )
        )
        assert kp.get_session(ADDR, TOKEN).expires_at > utcnow()


def test_a_late_refresh_never_brings_a_deleted_session_back(app: Flask, kp: KPSession):
    with app.app_context():
        made = kp.generate_session(ADDR, "alice")
        assert kp.remove_session(ADDR, made.token) is True
        assert kp.use_session(ADDR, made.token) is False
    assert _stored_count(app, kp) == 0


def test_the_idle_boundary_is_inclusive_and_shared_with_the_purge(
    app: Flask, kp: KPSession
):
    """A row idle for exactly the timeout is dead for validation and the purge."""
    with app.app_context():
        table = kp.db().metadata.tables["kp_sessions"]
        kp.add_session(UserSession(ADDR, TOKEN, "alice"))
        past = utcnow() - timedelta(minutes=120)
        with kp.db().engine.begin() as conn:
            conn.execute(update(table).values(last_used_at=past))
        assert kp.session_exists(ADDR, TOKEN) is False
        assert kp.delete_timed_out_sessions() == 1


def test_operations_need_an_app_context(kp: KPSession):
    with pytest.raises(RuntimeError):
        kp.session_exists(ADDR, TOKEN)


def test_use_always_writes_even_over_a_clock_running_ahead(app: Flask, kp: KPSession):
    """Another host's clock a minute ahead wrote last_used_at: use still refreshes."""
    ahead = utcnow() + timedelta(minutes=1)
    with app.app_context():
        kp.add_session(
            UserSession(ADDR, TOKEN, "alice", created_at=utcnow(), last_used_at=ahead)
        )
        assert kp.use_session(ADDR, TOKEN) is True
        assert kp.get_session(ADDR, TOKEN).last_used_at < ahead


def test_stored_times_come_back_in_utc_whatever_offset_was_given(
    app: Flask, kp: KPSession
):
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime.now(india).replace(microsecond=250000)
    session = UserSession(ADDR, TOKEN, "alice", created_at=local, last_used_at=local)
    with app.app_context():
        kp.add_session(session)
        found = kp.get_session(ADDR, TOKEN)
    for value in (session.created_at, session.expires_at, found.created_at):
        assert value.utcoffset() == timedelta(0)
    assert session.created_at == local
    assert found.created_at == local


@pytest.mark.parametrize("uname", ["line\nbreak", "tab\tbed", "nul\x00", "bidi\u202e"])
def test_add_refuses_usernames_with_control_characters(
    app: Flask, kp: KPSession, uname: str
):
    with app.app_context(), pytest.raises(ValueError, match="control characters"):
        kp.add_session(UserSession(ADDR, TOKEN, uname))


def test_tokens_may_use_every_url_safe_character(app: Flask, kp: KPSession):
    token = "Az09-._~" * 5
    with app.app_context():
        kp.add_session(UserSession(ADDR, token, "alice"))
        assert kp.get_session(ADDR, token).uname == "alice"
        with pytest.raises(ValueError):
            kp.add_session(UserSession(ADDR, "Az09+/=!" * 5, "alice"))

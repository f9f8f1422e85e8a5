"""Deleting timed-out sessions: the operation, its batches and the APScheduler job."""

from __future__ import annotations

import time
from datetime import timedelta

from flask import Flask
from sqlalchemy import func, insert, select

from flask_kpsession import KPSession, UserSession
from flask_kpsession.clock import utcnow
from flask_kpsession.scheduler import is_scheduled

from .conftest import AppFactory

ADDR = "203.0.113.7"


def _add(kp: KPSession, token_char: str, idle: timedelta, age: timedelta | None = None):
    now = utcnow()
    kp.add_session(
        UserSession(
            ADDR,
            token_char * 43,
            "alice",
            created_at=now - (age or idle),
            last_used_at=now - idle,
        )
    )


def _count(kp: KPSession) -> int:
    table = kp.db().metadata.tables["kp_sessions"]
    with kp.db().engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_purge_deletes_idle_and_expired_sessions_and_counts_them(
    app: Flask, kp: KPSession
):
    with app.app_context():
        _add(kp, "a", timedelta(minutes=1))  # live
        _add(kp, "b", timedelta(minutes=119, seconds=59))  # just under: live
        _add(kp, "c", timedelta(minutes=120, seconds=1))  # just over: idle
        _add(kp, "d", timedelta(days=3))  # idle
        _add(kp, "e", timedelta(minutes=1), age=timedelta(days=2))  # absolute
        assert kp.delete_timed_out_sessions() == 3
        assert kp.session_exists(ADDR, "a" * 43)
        assert kp.session_exists(ADDR, "b" * 43)
        assert _count(kp) == 2


def test_purge_with_an_explicit_timeout(app: Flask, kp: KPSession):
    with app.app_context():
        _add(kp, "a", timedelta(minutes=1))
        _add(kp, "b", timedelta(minutes=10))
        _add(kp, "c", timedelta(minutes=30))
        assert kp.delete_timed_out_sessions(5) == 2
        assert kp.delete_timed_out_sessions(timedelta(seconds=1)) == 1
        assert _count(kp) == 0


def test_purge_with_zero_deletes_everything(app: Flask, kp: KPSession):
    with app.app_context():
        for char in "abc":
            kp.generate_session(ADDR, f"user-{char}")
        assert kp.delete_timed_out_sessions(0) == 3
        assert _count(kp) == 0


def test_purge_walks_in_batches_and_loses_no_live_row(make_app: AppFactory):
    app = make_app(KPSESSION_CLEANUP_BATCH_SIZE=7)
    kp: KPSession = app.extensions["kpsession"]
    now = utcnow()
    with app.app_context():
        table = kp.db().metadata.tables["kp_sessions"]
        rows = [
            {
                "token_hash": bytes([n // 256, n % 256]) * 16,
                "public_id": f"id{n}",
                "uname": "bulk",
                "addr": ADDR,
                "user_agent": "",
                "created_at": now - timedelta(hours=3),
                # Groups of equal timestamps, as a burst of logins would leave.
                "last_used_at": now - timedelta(hours=3) + timedelta(seconds=n // 5)
                if n < 100
                else now,
            }
            for n in range(130)
        ]
        with kp.db().engine.begin() as conn:
            conn.execute(insert(table), rows)
        assert kp.delete_timed_out_sessions(timedelta(hours=1)) == 100
        assert _count(kp) == 30


def test_the_purge_job_deletes_rows_on_its_own(make_app: AppFactory):
    app = make_app(
        KPSESSION_TIMEOUT=timedelta(seconds=1),
        KPSESSION_CLEANUP_INTERVAL=timedelta(seconds=1),
    )
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.generate_session(ADDR, "alice")
        kp.start_timeout_loop(verbose=True)
        kp.start_timeout_loop(verbose=True)  # a second start changes nothing
        assert is_scheduled(app)
        assert _count(kp) == 1

        deadline = time.monotonic() + 6
        while _count(kp) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _count(kp) == 0

        kp.stop_timeout_loop()
        assert not is_scheduled(app)
        kp.stop_timeout_loop()  # stopping again does nothing


def test_the_job_starts_with_the_first_request_when_enabled(make_app: AppFactory):
    app = make_app(KPSESSION_CLEANUP_ENABLED=True)
    assert not is_scheduled(app)
    app.test_client().get("/auth/check")
    assert is_scheduled(app)


def test_the_job_stays_off_when_disabled(make_app: AppFactory):
    app = make_app(KPSESSION_CLEANUP_ENABLED=False)
    app.test_client().get("/auth/check")
    assert not is_scheduled(app)

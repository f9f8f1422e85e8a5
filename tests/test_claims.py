"""The purge claim: one purge per interval, whoever asks and however often."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import select, update

from flask_kpsession import KPSession, UserSession
from flask_kpsession.cleanup import (
    LEASE,
    Busy,
    Claim,
    PurgeClaims,
    ScheduledPurge,
    next_start,
)
from flask_kpsession.clock import utcnow
from flask_kpsession.database import Database
from flask_kpsession.scheduler import job_id, start_job, stop_job_by_id

from .conftest import AppFactory

HOUR = timedelta(hours=1)


def _database(kp: KPSession) -> Database:
    return kp._state().database


def _row(database: Database):
    table = database.tables.purge_claims
    with database.engine.connect() as conn:
        return conn.execute(select(table)).one()


def _set(database: Database, **values) -> None:
    table = database.tables.purge_claims
    with database.engine.begin() as conn:
        conn.execute(update(table).values(**values))


def test_next_start_stays_on_the_grid():
    due = datetime(2026, 1, 1, 12, 0, tzinfo=utcnow().tzinfo)
    minute = timedelta(minutes=1)
    assert next_start(due, due, minute) == due + minute
    assert next_start(due, due + timedelta(seconds=59), minute) == due + minute
    assert next_start(due, due + timedelta(minutes=3, seconds=30), minute) == (
        due + 4 * minute
    )
    assert next_start(due, due - timedelta(seconds=1), minute) == due


def test_of_many_simultaneous_contenders_exactly_one_wins(app: Flask, kp: KPSession):
    with app.app_context():
        database = _database(kp)
        database.ensure_tables()
    results: list[object] = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        claims = PurgeClaims(database)
        barrier.wait()
        results.append(claims.claim(HOUR))

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [r for r in results if isinstance(r, Claim)]
    assert len(winners) == 1
    assert [r for r in results if not isinstance(r, Claim)] == [None] * 7
    winners[0].release()
    # Released, but the next interval is an hour away: nothing is due.
    assert PurgeClaims(database).claim(HOUR) is None


def test_a_late_claim_takes_one_interval_and_moves_due_to_the_next_start(
    app: Flask, kp: KPSession
):
    with app.app_context():
        database = _database(kp)
        claims = PurgeClaims(database)
        first = claims.claim(HOUR)
        assert isinstance(first, Claim)
        first.release()

        # As if every process had been paused for three and a half hours.
        _set(database, due_at=utcnow() - 3.5 * HOUR)
        old_due = _row(database).due_at
        late = claims.claim(HOUR)
        assert isinstance(late, Claim)
        assert late.interval_start == old_due + 3 * HOUR
        assert _row(database).due_at == old_due + 4 * HOUR
        late.release()
        assert claims.claim(HOUR) is None  # one purge on waking, not four


def test_a_purge_still_running_makes_the_next_interval_busy_not_doubled(
    app: Flask, kp: KPSession
):
    with app.app_context():
        database = _database(kp)
        claims = PurgeClaims(database)
        running = claims.claim(HOUR)
        assert isinstance(running, Claim)

        _set(database, due_at=utcnow() - timedelta(seconds=1))  # next one is due
        busy = claims.claim(HOUR)
        assert isinstance(busy, Busy)
        assert busy.holder == running.holder

        running.release()
        assert isinstance(claims.claim(HOUR), Claim)  # the late run catches up


def test_a_lease_that_ran_out_is_taken_over_and_the_old_holder_stops(
    app: Flask, kp: KPSession
):
    with app.app_context():
        database = _database(kp)
        claims = PurgeClaims(database)
        dead = claims.claim(HOUR)
        assert isinstance(dead, Claim)
        assert dead.renew(force=True)
        row = _row(database)
        assert row.lease_until > utcnow() + LEASE - timedelta(seconds=5)

        # Its process died: the lease runs out and the next interval comes.
        _set(
            database,
            due_at=utcnow() - timedelta(seconds=1),
            lease_until=utcnow() - timedelta(seconds=1),
        )
        heir = claims.claim(HOUR)
        assert isinstance(heir, Claim)
        assert heir.holder != dead.holder
        assert not dead.renew(force=True)
        dead.release()  # releases nothing of the heir's
        assert _row(database).lease_until is not None


def test_a_start_set_by_a_clock_far_ahead_is_not_honoured(app: Flask, kp: KPSession):
    with app.app_context():
        database = _database(kp)
        claims = PurgeClaims(database)
        first = claims.claim(HOUR)
        assert isinstance(first, Claim)
        first.release()
        _set(database, due_at=utcnow() + timedelta(days=365))
        assert isinstance(claims.claim(HOUR), Claim)
        assert _row(database).due_at < utcnow() + 2 * HOUR


def test_the_scheduled_purge_stops_between_batches_and_releases_its_claim(
    make_app: AppFactory,
):
    app = make_app(KPSESSION_CLEANUP_BATCH_SIZE=3)
    kp: KPSession = app.extensions["kpsession"]
    now = utcnow()
    with app.app_context():
        for n in range(10):
            kp.add_session(
                UserSession(
                    "203.0.113.7",
                    f"{n:02d}" * 20,
                    "alice",
                    created_at=now - timedelta(hours=5),
                    last_used_at=now - timedelta(hours=5),
                )
            )
        batches: list[int] = []

        def keep_going() -> bool:
            batches.append(1)
            return len(batches) <= 2  # two batches, then "shutting down"

        state = kp._state()
        job = ScheduledPurge(
            state.database, state.purger, state.sessions.boundary, HOUR
        )
        assert job.run(keep_going) == 6
        assert _row(state.database).lease_until is None
        assert kp.delete_timed_out_sessions() == 4
        # This interval was claimed and purged: nothing more is due in it.
        assert job.run(lambda: True) is None


def test_a_due_interval_with_the_lease_held_is_skipped_with_a_warning(
    app: Flask, kp: KPSession, caplog
):
    with app.app_context():
        state = kp._state()
        job = ScheduledPurge(
            state.database, state.purger, state.sessions.boundary, HOUR
        )
        held = PurgeClaims(state.database).claim(HOUR)
        assert isinstance(held, Claim)
        _set(state.database, due_at=utcnow() - timedelta(seconds=1))
        with caplog.at_level(logging.DEBUG, logger="flask_kpsession"):
            assert job.run(lambda: True) is None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert held.holder in warnings[0].getMessage()
        assert "still running" in warnings[0].getMessage()
        held.release()
        assert job.run(lambda: True) == 0  # the late run catches up


def test_a_run_that_finds_the_last_one_going_skips_it_with_a_warning(
    app: Flask, caplog
):
    active: list[int] = []
    overlaps: list[int] = []
    calls: list[float] = []
    release = threading.Event()

    def slow_purge(target: Flask, keep_going) -> None:
        active.append(1)
        overlaps.append(len(active))
        calls.append(time.monotonic())
        release.wait(5)
        active.pop()

    with caplog.at_level(logging.WARNING, logger="flask_kpsession"):
        assert start_job(app, timedelta(seconds=0.2), slow_purge, first_run=utcnow())
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not [
                r for r in caplog.records if "still going" in r.getMessage()
            ]:
                time.sleep(0.05)
        finally:
            stop_job_by_id(job_id(app))
            release.set()
    skipped = [r for r in caplog.records if "still going" in r.getMessage()]
    assert skipped and skipped[0].levelno == logging.WARNING
    assert len(calls) == 1
    assert max(overlaps) == 1

"""The purge's batches: one transaction each, sized by how long a DELETE takes.

Statements are counted with SQLAlchemy's events; the DELETE's duration is
read from a fake clock that charges a fixed cost per row, so the sizing is
shown without timing anything.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, insert, select

from flask_kpsession import KPSession
from flask_kpsession.clock import utcnow

from .conftest import AppFactory


def _fill(app: Flask, dead: int, live: int) -> None:
    kp: KPSession = app.extensions["kpsession"]
    now = utcnow()
    rows = [
        {
            "token_hash": n.to_bytes(4, "big") * 8,
            "public_id": f"id{n}",
            "uname": f"user{n % 7}",
            "addr": "203.0.113.7",
            "user_agent": "",
            "created_at": now - timedelta(hours=4),
            "last_used_at": now - timedelta(hours=3, seconds=n) if n < dead else now,
        }
        for n in range(dead + live)
    ]
    with app.app_context(), kp.db().engine.begin() as conn:
        conn.execute(insert(kp.db().metadata.tables["kp_sessions"]), rows)


def _stored(app: Flask) -> int:
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context(), kp.db().engine.connect() as conn:
        table = kp.db().metadata.tables["kp_sessions"]
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_each_batch_is_one_transaction_with_one_commit(make_app: AppFactory):
    app = make_app(KPSESSION_CLEANUP_BATCH_SIZE=10)
    kp: KPSession = app.extensions["kpsession"]
    _fill(app, dead=30, live=5)
    steps: list[str] = []

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "kp_sessions" in statement:
            steps.append(statement.split(None, 1)[0].upper())
        else:
            steps.append("other")

    def on_commit(conn: Any) -> None:
        steps.append("COMMIT")

    with app.app_context():
        engine = kp.db().engine
        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "commit", on_commit)
        try:
            assert kp.delete_timed_out_sessions() == 30
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
            event.remove(engine, "commit", on_commit)

    # Three full batches, each read and deleted in one committed transaction;
    # the reads that find nothing more (this pass and the others) commit nothing.
    walk = " ".join(steps[: steps.index("other")] if "other" in steps else steps)
    batch = "SELECT DELETE COMMIT"
    assert walk == " ".join([batch] * 3 + ["SELECT"] * 5)
    assert _stored(app) == 5


def test_batches_shrink_to_keep_each_delete_short(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
):
    app = make_app(KPSESSION_CLEANUP_BATCH_SIZE=2000)
    kp: KPSession = app.extensions["kpsession"]
    _fill(app, dead=600, live=20)
    sizes: list[int] = []
    clock = {"now": 0.0}

    def on_execute(
        conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any
    ) -> None:
        if statement.startswith("DELETE FROM kp_sessions"):
            # The hashes plus the cut-off: charge 1 ms per row to the clock.
            rows = len(parameters) - 1
            sizes.append(rows)
            clock["now"] += 0.001 * rows

    def fake_perf_counter() -> float:
        return clock["now"]

    monkeypatch.setattr("flask_kpsession.purge.time.perf_counter", fake_perf_counter)
    monkeypatch.setattr("flask_kpsession.purge.TARGET_STATEMENT_SECONDS", 0.04)
    with app.app_context():
        engine = kp.db().engine
        event.listen(engine, "before_cursor_execute", on_execute)
        try:
            assert kp.delete_timed_out_sessions() == 600
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)

    # 50 rows "took" 50 ms: 40 rows next time, and steady there (40 ms).
    assert sizes[:3] == [50, 40, 40]
    assert max(sizes[1:]) == 40
    assert sum(sizes) == 600
    assert _stored(app) == 20


def test_batches_grow_on_a_fast_table_up_to_the_configured_size(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
):
    app = make_app(KPSESSION_CLEANUP_BATCH_SIZE=1000)
    kp: KPSession = app.extensions["kpsession"]
    _fill(app, dead=2500, live=3)
    sizes: list[int] = []

    def on_execute(
        conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any
    ) -> None:
        if statement.startswith("DELETE FROM kp_sessions"):
            sizes.append(len(parameters) - 1)

    # Every DELETE "takes" no time: each batch may double, to the ceiling.
    monkeypatch.setattr("flask_kpsession.purge.time.perf_counter", lambda: 0.0)
    with app.app_context():
        engine = kp.db().engine
        event.listen(engine, "before_cursor_execute", on_execute)
        try:
            assert kp.delete_timed_out_sessions() == 2500
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)

    assert sizes == [50, 100, 200, 400, 800, 950]
    assert _stored(app) == 3

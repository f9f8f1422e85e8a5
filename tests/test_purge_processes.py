"""The purge job in real processes: many of them, the reloader, pauses, SIGTERM.

Each process runs ``served_app.py`` and appends its ``flask_kpsession`` log lines,
with time and pid, to one file; the tests count job runs and claimed intervals
from it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from flask_kpsession import KPSession
from flask_kpsession.clock import utcnow

from .conftest import AppFactory, Backend
from .processes import (
    BIN,
    alive,
    claims,
    fires,
    free_port,
    get,
    read_log,
    running,
    served_env,
    wait_for_http,
)

ADDR = "203.0.113.7"
mariadb_only = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)


def _expired_rows(kp: KPSession, count: int, offset: int = 0) -> None:
    now = utcnow()
    table = kp.db().metadata.tables["kp_sessions"]
    rows = [
        {
            "token_hash": (offset + n).to_bytes(32, "big"),
            "public_id": f"expired{offset + n}",
            "uname": "gone",
            "addr": ADDR,
            "user_agent": "",
            "created_at": now - timedelta(hours=3),
            "last_used_at": now - timedelta(hours=3) + timedelta(microseconds=n),
        }
        for n in range(count)
    ]
    with kp.db().engine.begin() as conn:
        for start in range(0, count, 5000):
            conn.execute(insert(table), rows[start : start + 5000])


def _count(kp: KPSession) -> int:
    table = kp.db().metadata.tables["kp_sessions"]
    with kp.db().engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _in(lines, start: float, end: float):
    return [line for line in lines if start <= line.created <= end]


@mariadb_only
def test_four_processes_purge_exactly_once_per_interval(
    backend: Backend, make_app: AppFactory, tmp_path: Path
):
    app = make_app()
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        live = kp.generate_session(ADDR, "alice")
        _expired_rows(kp, 50)
    env = served_env(tmp_path, backend.url, interval=1.0)
    script = [sys.executable, "served_app.py", "60"]

    with (
        running(script, env, tmp_path, "p1") as p1,
        running(script, env, tmp_path, "p2") as p2,
        running(script, env, tmp_path, "p3") as p3,
        running(script, env, tmp_path, "p4") as p4,
    ):
        processes = [p1, p2, p3, p4]
        for process in processes:
            process.wait_for_output("ready")
        start = time.time()
        time.sleep(5.2)
        end = time.time()
        lines = read_log(tmp_path / "kpsession.log")

    window = _in(lines, start, end)
    runs = fires(window)
    pids = {process.pid for process in processes}
    # Every process runs the job every interval...
    assert {line.pid for line in runs} == pids
    for pid in pids:
        assert 4 <= len([line for line in runs if line.pid == pid]) <= 6
    # ...and each interval is claimed, and purged, by exactly one of them.
    claimed = claims(window)
    starts = [interval for interval, _ in claimed]
    assert len(starts) == len(set(starts)), claimed
    assert 4 <= len(starts) <= 6
    assert len(claims(lines)) == len({s for s, _ in claims(lines)})
    assert not [
        line
        for line in lines
        if line.level in ("WARNING", "ERROR") and "COOKIE_SECURE" not in line.message
    ]
    for process in processes:
        assert "Traceback" not in process.errors()

    with app.app_context():
        assert _count(kp) == 1
        assert kp.session_exists(ADDR, live.token or "")


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(["--debug"], id="debug-reloader"),
        pytest.param(["--debug", "--no-reload"], id="debug-no-reload"),
        pytest.param([], id="plain"),
    ],
)
def test_flask_run_purges_once_per_interval_in_the_serving_process_only(
    mode: list[str], tmp_path: Path
):
    env = served_env(tmp_path, f"sqlite:///{tmp_path / 'sessions.sqlite3'}")
    port = free_port()
    command = [str(BIN / "flask"), "--app", "served_app", "run", *mode]
    command += ["--port", str(port)]
    log = tmp_path / "kpsession.log"

    with running(command, env, tmp_path, "flask") as flask_run:
        wait_for_http(port)
        serving = json.loads(get(port, "/pid")[1])["pid"]
        start = time.time()
        time.sleep(3.3)
        end = time.time()
        runs = fires(_in(read_log(log), start, end))
        assert {line.pid for line in runs} == {serving}
        assert 2 <= len(runs) <= 4
        if "--no-reload" in mode or not mode:
            assert serving == flask_run.pid
            return

        # The reloader's watcher imported the app too, but runs no job.
        assert serving != flask_run.pid
        assert flask_run.pid not in {line.pid for line in fires(read_log(log))}

        # A reload replaces the serving process; its scheduler goes with it.
        source = tmp_path / "served_app.py"
        source.write_text(source.read_text() + "\n# changed\n")
        deadline = time.monotonic() + 20
        reloaded = serving
        while reloaded == serving and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                reloaded = json.loads(get(port, "/pid")[1])["pid"]
            except (OSError, ValueError):
                continue
        assert reloaded != serving
        assert not alive(serving)
        start = time.time()
        time.sleep(3.3)
        end = time.time()
        runs = fires(_in(read_log(log), start, end))
        assert {line.pid for line in runs} == {reloaded}
        assert 2 <= len(runs) <= 4
    starts = [interval for interval, _ in claims(read_log(log))]
    assert len(starts) == len(set(starts))
    assert "Traceback" not in flask_run.errors()


def test_a_paused_process_runs_one_purge_on_waking_not_a_burst(tmp_path: Path):
    env = served_env(tmp_path, f"sqlite:///{tmp_path / 'sessions.sqlite3'}")
    log = tmp_path / "kpsession.log"
    with running([sys.executable, "served_app.py", "60"], env, tmp_path, "p") as p:
        p.wait_for_output("ready")
        time.sleep(1.5)
        os.kill(p.pid, signal.SIGSTOP)
        time.sleep(4.5)  # four and a half intervals
        resumed = time.time()
        os.kill(p.pid, signal.SIGCONT)
        time.sleep(2.6)
        lines = read_log(log)

    after = fires(_in(lines, resumed, resumed + 10))
    assert len(after) >= 2
    # One run on waking; the next one an interval later, not right behind it.
    assert after[1].created - after[0].created > 0.5
    claimed = claims(_in(lines, resumed, resumed + 10))
    starts = [interval for interval, _ in claimed]
    assert len(starts) == len(set(starts)) == len(after)
    assert not [line for line in lines if "missed" in line.message]


@mariadb_only
def test_sigterm_during_a_purge_exits_cleanly_within_seconds(
    backend: Backend, make_app: AppFactory, tmp_path: Path
):
    app = make_app()
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        _expired_rows(kp, 30000)
    env = served_env(tmp_path, backend.url, interval=0.5)
    env["KP_TEST_CONFIG"] = '{"KPSESSION_CLEANUP_BATCH_SIZE": 20}'
    port = free_port()
    command = [str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}"]
    command += ["served_app:create_app()"]
    log = tmp_path / "kpsession.log"

    with running(command, env, tmp_path, "gunicorn") as server:
        wait_for_http(port)
        deadline = time.monotonic() + 10
        while not claims(read_log(log)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert claims(read_log(log)), "no purge started"
        time.sleep(0.3)
        with app.app_context():
            assert 0 < _count(kp) < 30000  # mid-purge

        os.kill(server.pid, signal.SIGTERM)
        stopped = time.monotonic()
        server.popen.wait(timeout=20)
        took = time.monotonic() - stopped

    assert server.popen.returncode == 0
    assert took < 10
    assert "Traceback" not in server.errors()
    messages = [line.message for line in read_log(log)]
    assert any(m.startswith("purge stopped early by shutdown") for m in messages)
    with app.app_context():
        assert _count(kp) > 0  # stopped, not finished
        table = kp.db().metadata.tables["kp_purge_claims"]
        with kp.db().engine.connect() as conn:
            assert conn.execute(select(table.c.lease_until)).scalar_one() is None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_two_apps_in_one_process_each_purge_only_their_own(
    make_app: AppFactory, tmp_path: Path
):
    fast = make_app(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'fast.sqlite3'}",
        KPSESSION_CLEANUP_INTERVAL=timedelta(seconds=0.5),
    )
    slow = make_app(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'slow.sqlite3'}",
        KPSESSION_CLEANUP_INTERVAL=timedelta(hours=1),
    )
    for app in (fast, slow):
        kp: KPSession = app.extensions["kpsession"]
        with app.app_context():
            _expired_rows(kp, 5)
            kp.generate_session(ADDR, "alice")
            kp.start_timeout_loop(verbose=False)

    deadline = time.monotonic() + 10
    fast_kp: KPSession = fast.extensions["kpsession"]
    while time.monotonic() < deadline:
        with fast.app_context():
            if _count(fast_kp) == 1:
                break
        time.sleep(0.1)
    with fast.app_context():
        assert _count(fast_kp) == 1
    slow_kp: KPSession = slow.extensions["kpsession"]
    with slow.app_context():
        assert _count(slow_kp) == 6

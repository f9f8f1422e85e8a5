"""The purge at scale: a million timed-out rows, live sessions refreshed meanwhile.

Run from the project root, after ``pip install -e '.[test]'``::

    .venv/bin/python reliability/purge_scale.py     # --rows N for another size

It starts a private ``mariadbd`` (its own datadir and port; MariaDB's default
128 MiB buffer pool, smaller than the table), fills ``kp_sessions`` with
``--rows`` timed-out sessions, live ones, and sessions idle one second under
and one second over the timeout, then runs ``delete_timed_out_sessions()``
while threads keep refreshing the live sessions. It prints how long the purge
took, how many batches it ran, its longest statement, the slowest refresh, and
checks that exactly the dead rows went; it exits non-zero if a row was wrongly
kept or lost.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event, func, insert, select

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from soak import PrivateMariaDB  # noqa: E402

from flask_kpsession import KPSession, UserSession  # noqa: E402
from flask_kpsession.clock import utcnow  # noqa: E402

ADDR = "192.0.2.1"
IDLE = timedelta(minutes=30)


def fill(database: PrivateMariaDB, rows: int) -> None:
    """Insert ``rows`` sessions idle for one to three hours, inside the server."""
    stamp = utcnow().strftime("%Y-%m-%d %H:%M:%S")
    step = 100_000
    for start in range(0, rows, step):
        statement = (
            "INSERT INTO kp_sessions (token_hash, public_id, uname, addr, "
            "user_agent, created_at, last_used_at) "
            f"SELECT UNHEX(SHA2(seq + {start}, 256)), CONCAT('dead', seq + {start}), "
            f"CONCAT('user', seq % 5000), '{ADDR}', 'scale', "
            f"TIMESTAMP'{stamp}' - INTERVAL 3 HOUR, "
            f"TIMESTAMP'{stamp}' - INTERVAL 3 HOUR + INTERVAL (seq % 7200) SECOND "
            f"FROM seq_1_to_{min(step, rows - start)}"
        )
        subprocess.run(
            ["mariadb", "-uroot", "-h127.0.0.1", f"-P{database.port}", "scale"],
            input=statement.encode(),
            check=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=2000)
    parser.add_argument("--refreshers", type=int, default=4)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="kpsession-scale-"))
    database = PrivateMariaDB(root, buffer_pool="128M")
    try:
        database.install()
        database.start()
        subprocess.run(
            [
                "mariadb",
                "-uroot",
                "-h127.0.0.1",
                f"-P{database.port}",
                "-e",
                "CREATE DATABASE scale CHARACTER SET utf8mb4",
            ],
            check=True,
        )
        app = Flask("purge_scale", instance_path=str(root / "instance"))
        app.config.update(
            SECRET_KEY="purge scale secret key, long enough to be real",
            SQLALCHEMY_DATABASE_URI=database.url("scale"),
            SQLALCHEMY_ENGINE_OPTIONS={"pool_size": args.refreshers + 2},
            KPSESSION_TIMEOUT=IDLE,
            KPSESSION_ABSOLUTE_TIMEOUT=None,
            KPSESSION_CLEANUP_ENABLED=False,
        )
        kp = KPSession(app)
        with app.app_context():
            engine = kp.db().engine
            table = kp.db().metadata.tables["kp_sessions"]
            kp.session_exists(ADDR, "x" * 43)  # creates the tables

            began = time.monotonic()
            fill(database, args.rows)
            now = utcnow()
            live = [kp.generate_session(ADDR, f"live{n}") for n in range(args.live)]
            under = []
            for n in range(100):
                session = UserSession(ADDR, f"under{n:03d}".ljust(43, "u"), "edge")
                session.created_at = now - IDLE
                session.last_used_at = now - IDLE + timedelta(seconds=60)
                kp.add_session(session)
                under.append(session)
            with engine.begin() as conn:
                conn.execute(
                    insert(table),
                    [
                        {
                            "token_hash": (10**12 + n).to_bytes(32, "big"),
                            "public_id": f"over{n}",
                            "uname": "edge",
                            "addr": ADDR,
                            "user_agent": "",
                            "created_at": now - IDLE - timedelta(seconds=1),
                            "last_used_at": now - IDLE - timedelta(seconds=1),
                        }
                        for n in range(100)
                    ],
                )
                conn.exec_driver_sql("ANALYZE TABLE kp_sessions")
                total = conn.execute(select(func.count()).select_from(table)).scalar()
            print(
                f"filled {total} rows in {time.monotonic() - began:.0f} s "
                f"({args.rows} timed out, {args.live} live, 100 one minute under "
                f"the timeout, 100 one second over)",
                flush=True,
            )

        timings: dict[int, float] = {}
        longest: list[tuple[float, str]] = [(0.0, "")]
        deletes = 0

        @event.listens_for(engine, "before_cursor_execute")
        def started(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            timings[id(cursor)] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def ended(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            nonlocal deletes
            took = time.perf_counter() - timings.pop(id(cursor), time.perf_counter())
            if statement.startswith("DELETE"):
                deletes += 1
            if took > longest[0][0]:
                longest[0] = (took, statement.split("\n")[0][:60])

        stop = threading.Event()
        refresh_times: list[float] = []
        refresh_failures: list[str] = []

        def refresh(sessions: list[UserSession]) -> None:
            with app.app_context():
                while not stop.is_set():
                    for session in sessions:
                        if stop.is_set():
                            break
                        began = time.perf_counter()
                        if not kp.use_session(ADDR, session.token or ""):
                            refresh_failures.append(session.uname)
                        refresh_times.append(time.perf_counter() - began)

        threads = [
            threading.Thread(target=refresh, args=(live[n :: args.refreshers],))
            for n in range(args.refreshers)
        ]
        for thread in threads:
            thread.start()
        with app.app_context():
            began = time.monotonic()
            purged = kp.delete_timed_out_sessions()
            took = time.monotonic() - began
        stop.set()
        for thread in threads:
            thread.join()

        with engine.connect() as conn:
            left: dict[str, int] = dict(
                conn.execute(
                    select(table.c.user_agent, func.count()).group_by(
                        table.c.user_agent
                    )
                ).all()
            )
            edge = conn.execute(
                select(func.count()).select_from(table).where(table.c.uname == "edge")
            ).scalar()
            count = sum(left.values())
        engine.dispose()

        refresh_times.sort()
        p99 = refresh_times[int(len(refresh_times) * 0.99)] if refresh_times else 0.0
        expected = args.live + 100
        print(
            f"purged {purged} rows in {took:.1f} s ({purged / took:.0f} rows/s), "
            f"{deletes} DELETE statements"
        )
        print(f"longest statement: {longest[0][0] * 1000:.0f} ms ({longest[0][1]})")
        print(
            f"refreshes of live sessions during the purge: {len(refresh_times)}, "
            f"p99 {p99 * 1000:.1f} ms, slowest "
            f"{(refresh_times[-1] if refresh_times else 0) * 1000:.0f} ms, "
            f"failed {len(refresh_failures)}"
        )
        print(
            f"rows left: {count} (expected {expected}: the live ones and those "
            f"a minute under the timeout); of the 200 at the edge, {edge} left"
        )
        ok = (
            purged == args.rows + 100
            and count == expected
            and edge == 100
            and "scale" not in left
            and not refresh_failures
        )
        print("result: " + ("PASS" if ok else "FAIL"))
        return 0 if ok else 1
    finally:
        database.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""A threaded gunicorn worker under concurrent logins, checks and logouts.

One worker with eight threads shares the extension's pool between threads while
the purge runs every second; on MariaDB and on the embedded SQLite file alike,
every answer must be the expected one: no 500, no 503, no driver protocol error,
no "database is locked".
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

from flask_kpsession import KPSession

from .conftest import AppFactory, Backend
from .processes import (
    BIN,
    claims,
    free_port,
    read_log,
    running,
    served_env,
    wait_for_http,
)

PASSWORD = "correct horse battery"
USERS = ("ann", "ben", "cai", "dee")
TROUBLE = re.compile(
    r"Traceback|InterfaceError|Packet sequence|out of sync|database is locked"
    r"|Lost connection|Internal Server Error",
    re.IGNORECASE,
)
NO_THROTTLE = {
    "KPSESSION_LOGIN_PAIR_LIMIT": 1_000_000,
    "KPSESSION_LOGIN_ADDRESS_LIMIT": 1_000_000,
    "KPSESSION_LOGIN_USER_LIMIT": 1_000_000,
    "KPSESSION_REFRESH_THROTTLE": 0.0,
    "KPSESSION_TIMEOUT": 2.0,
}


def _call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    token: str | None = None,
    body: dict[str, str] | None = None,
) -> tuple[int, dict]:
    headers = {"Connection": "keep-alive"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = {"raw": payload[:200].decode(errors="replace")}
    return response.status, parsed


def _cycles(port: int, user: str, deadline: float, tally: Counter, wrong: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        steps: list[tuple[str, int, int]] = []
        status, body = _call(
            conn, "POST", "/auth/login", body={"username": user, "password": PASSWORD}
        )
        steps.append(("login", status, 200))
        token = body.get("token")
        steps.append(("check", _call(conn, "GET", "/auth/check", token)[0], 200))
        steps.append(("private", _call(conn, "GET", "/private", token)[0], 200))
        steps.append(("junk", _call(conn, "GET", "/private", "x" * 43)[0], 401))
        if n % 4 == 0:
            bad = {"username": user, "password": "wrong"}
            steps.append(
                ("wrong", _call(conn, "POST", "/auth/login", body=bad)[0], 401)
            )
        steps.append(("logout", _call(conn, "POST", "/auth/logout", token)[0], 200))
        steps.append(("replay", _call(conn, "GET", "/auth/check", token)[0], 401))
        for name, got, expected in steps:
            tally[got] += 1
            if got != expected:
                wrong.append((name, got, expected))
    conn.close()


def test_a_threaded_worker_gives_only_the_expected_answers(
    backend: Backend, make_app: AppFactory, tmp_path: Path
):
    app = make_app()
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        for user in USERS:
            kp.create_user(user, PASSWORD)
        kp.db().engine.dispose()

    env = served_env(tmp_path, backend.url, interval=1.0)
    env["KP_TEST_CONFIG"] = json.dumps(NO_THROTTLE)
    port = free_port()
    command = [str(BIN / "gunicorn"), "-w", "1", "-k", "gthread", "--threads", "8"]
    command += ["-b", f"127.0.0.1:{port}", "served_app:create_app()"]
    tally: Counter[int] = Counter()
    wrong: list[tuple[str, int, int]] = []

    with running(command, env, tmp_path, "gunicorn") as server:
        wait_for_http(port)
        deadline = time.monotonic() + 4.5
        clients = [
            threading.Thread(target=_cycles, args=(port, user, deadline, tally, wrong))
            for user in USERS * 3
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=60)
        time.sleep(0.5)
        errors = server.errors()

    assert wrong == [], Counter(wrong).most_common(5)
    assert sum(tally.values()) > 150
    assert not [s for s in tally if s >= 500]
    assert not TROUBLE.search(errors), TROUBLE.search(errors)
    lines = read_log(tmp_path / "kpsession.log")
    assert len(claims(lines)) >= 3  # the purge ran all along
    assert not [line for line in lines if line.level in ("ERROR", "CRITICAL")]
    assert not [line for line in lines if TROUBLE.search(line.message)]

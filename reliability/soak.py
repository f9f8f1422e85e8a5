"""Soak test: four gunicorn workers, a mixed load, and one MariaDB restart midway.

Run from the project root, after ``pip install -e '.[test]'``::

    .venv/bin/python reliability/soak.py            # 60 s; --help for the knobs

It starts a private ``mariadbd`` (its own datadir, port and socket under a
temporary directory; the shared server is never touched), serves
``reliability/soak_app.py`` with gunicorn on 127.0.0.1, creates users, and runs
client threads for a fixed time: logins, checks, logouts, sessions left to time
out, long-lived sessions kept alive, and deliberately bad requests. The purge
runs every few seconds in every worker. Halfway through, MariaDB is shut down
and started again. At the end it prints the figures below and exits non-zero
if any of the must-hold ones fails:

- requests sent, and answers by status;
- 5xx answers other than 503 (must be 0);
- live sessions that vanished: a session answered 401 while it should be live
  (must be 0);
- purges per interval (must be 1) across all workers, from their log lines;
- time to recover: from MariaDB accepting connections again to the first
  answer that needed the database.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PASSWORD = "soak password, correct and long"
USERS = [f"user{n}" for n in range(8)]
#: Request kinds whose answer needs the database.
NEEDS_DATABASE = {"login", "check", "private", "logout", "keeper", "replay", "wrong"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return bool(sock.recv(1))  # the server's greeting
    except OSError:
        return False


class PrivateMariaDB:
    """A throwaway ``mariadbd`` of our own, which we may stop and start at will."""

    def __init__(self, root: Path, buffer_pool: str = "64M") -> None:
        self.root = root
        self.buffer_pool = buffer_pool
        self.datadir = root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--user={pwd.getpwuid(os.geteuid()).pw_name}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        command = [
            "mariadbd",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.root / 'mysqld.sock'}",
            f"--pid-file={self.root / 'mysqld.pid'}",
            f"--log-error={self.root / 'error.log'}",
            "--skip-log-bin",
            f"--innodb-buffer-pool-size={self.buffer_pool}",
            "--max-connections=200",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while not accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not start; see {self.root}/error.log")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def url(self, database: str = "") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"


@dataclass
class Answer:
    at: float
    kind: str
    status: int


@dataclass
class Tally:
    answers: list[Answer] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    unexpected: Counter[tuple[str, int]] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)


class Client:
    """One client thread's connection to the server, and what it saw."""

    def __init__(self, port: int, tally: Tally) -> None:
        self.port = port
        self.tally = tally

    def call(
        self,
        kind: str,
        method: str,
        path: str,
        token: str | None = None,
        body: object = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, object]]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except OSError as error:
            self.tally.transport_errors[type(error).__name__] += 1
            return 0, {}
        finally:
            conn.close()
        self.tally.answers.append(Answer(time.time(), kind, response.status))
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = {}
        return response.status, parsed if isinstance(parsed, dict) else {}

    def expect(self, kind: str, status: int, *allowed: int) -> None:
        if status not in allowed and status not in (0, 503):
            self.tally.unexpected[kind, status] += 1


def run_client(
    port: int, deadline: float, keepers: list[str], tally: Tally, seed: int
) -> None:
    rng = random.Random(seed)
    client = Client(port, tally)
    while time.time() < deadline:
        roll = rng.random()
        if roll < 0.35:
            user = rng.choice(USERS)
            status, body = client.call(
                "login",
                "POST",
                "/auth/login",
                body={"username": user, "password": PASSWORD},
            )
            client.expect("login", status, 200)
            token = body.get("token")
            if status != 200 or not isinstance(token, str):
                continue
            status, _ = client.call("check", "GET", "/auth/check", token)
            if status == 401:
                tally.vanished.append("a session checked right after its login")
            client.expect("check", status, 200)
            status, _ = client.call("private", "GET", "/private", token)
            if status == 401:
                tally.vanished.append("a session used right after its login")
            client.expect("private", status, 200)
            if rng.random() < 0.6:
                status, _ = client.call("logout", "POST", "/auth/logout", token)
                client.expect("logout", status, 200)
                if status == 200:
                    status, _ = client.call("replay", "GET", "/auth/check", token)
                    client.expect("replay", status, 401)
            # else: left to time out, for the purge.
        elif roll < 0.7:
            token = rng.choice(keepers)
            status, _ = client.call("keeper", "GET", "/auth/check", token)
            if status == 401:
                tally.vanished.append("a long-lived session")
            client.expect("keeper", status, 200)
        else:
            bad = rng.randrange(6)
            if bad == 0:
                wrong = {"username": rng.choice(USERS), "password": "wrong"}
                status, _ = client.call("wrong", "POST", "/auth/login", body=wrong)
                client.expect("wrong", status, 401)
            elif bad == 1:
                status, _ = client.call(
                    "malformed", "POST", "/auth/login", raw=b"{nope"
                )
                client.expect("malformed", status, 400)
            elif bad == 2:
                status, _ = client.call("malformed", "POST", "/auth/login", body=[1, 2])
                client.expect("malformed", status, 400)
            elif bad == 3:
                status, _ = client.call("junk token", "GET", "/auth/check", "!" * 40)
                client.expect("junk token", status, 401)
            elif bad == 4:
                status, _ = client.call("no route", "GET", "/auth/nowhere")
                client.expect("no route", status, 404)
            else:
                status, _ = client.call("wrong method", "GET", "/auth/login")
                client.expect("wrong method", status, 405)


def read_log(path: Path) -> list[tuple[float, int, str, str, str]]:
    lines = []
    for raw in path.read_text().splitlines():
        parts = raw.split(" ", 4)
        if len(parts) == 5 and parts[1].isdigit():
            lines.append((float(parts[0]), int(parts[1]), parts[2], parts[3], parts[4]))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the load")
    parser.add_argument("--interval", type=float, default=3, help="purge interval (s)")
    parser.add_argument("--timeout", type=float, default=20, help="idle timeout (s)")
    parser.add_argument("--down", type=float, default=4, help="MariaDB down time (s)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="kpsession-soak-"))
    database = PrivateMariaDB(root)
    server: subprocess.Popen[bytes] | None = None
    try:
        print(f"private MariaDB in {root}, port {database.port}", flush=True)
        database.install()
        database.start()
        subprocess.run(
            [
                "mariadb",
                "-uroot",
                "-h127.0.0.1",
                f"-P{database.port}",
                "-e",
                "CREATE DATABASE soak CHARACTER SET utf8mb4",
            ],
            check=True,
        )
        (root / "instance").mkdir()
        log = root / "kpsession.log"
        env = dict(
            os.environ,
            SOAK_DB=database.url("soak"),
            SOAK_LOG=str(log),
            SOAK_INSTANCE=str(root / "instance"),
            SOAK_INTERVAL=str(args.interval),
            SOAK_TIMEOUT=str(args.timeout),
            PYTHONPATH=str(HERE),
        )
        os.environ.update(env)
        sys.path.insert(0, str(HERE))
        from soak_app import create_app

        setup = create_app()
        kp = setup.extensions["kpsession"]
        with setup.app_context():
            for user in USERS:
                kp.create_user(user, PASSWORD)
            kp.db().engine.dispose()

        port = free_port()
        server = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "-w",
                str(args.workers),
                "-b",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "10",
                "soak_app:create_app()",
            ],
            env=env,
            cwd=root,
            stdout=open(root / "gunicorn.out", "wb"),
            stderr=open(root / "gunicorn.err", "wb"),
        )
        tally = Tally()
        probe = Client(port, Tally())
        deadline = time.monotonic() + 30
        while probe.call("probe", "GET", "/auth/check")[0] != 401:
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer")
            time.sleep(0.2)
        keepers = []
        for n in range(24):
            status, body = probe.call(
                "login",
                "POST",
                "/auth/login",
                body={"username": USERS[n % len(USERS)], "password": PASSWORD},
            )
            assert status == 200, status
            keepers.append(str(body["token"]))

        started = time.time()
        end = started + args.seconds
        threads = [
            threading.Thread(target=run_client, args=(port, end, keepers, tally, n))
            for n in range(args.clients)
        ]
        for thread in threads:
            thread.start()

        time.sleep(args.seconds / 2)
        stop_began = time.time()
        database.stop()
        stopped = time.time()
        time.sleep(args.down)
        database.start()
        back_up = time.time()
        print(
            f"MariaDB restarted: shutdown took {stopped - stop_began:.1f} s, down "
            f"{back_up - stopped:.1f} s more, accepting again at "
            f"+{back_up - started:.1f} s",
            flush=True,
        )

        for thread in threads:
            thread.join()
        finished = time.time()

        still_live = sum(
            1
            for token in keepers
            if probe.call("final", "GET", "/auth/check", token)[0] == 200
        )
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        return report(
            args,
            tally,
            log,
            root,
            keepers,
            still_live,
            server.returncode,
            started,
            finished,
            stop_began,
            back_up,
        )
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        database.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _brief(counts: Counter[Any]) -> str:
    return str(dict(counts)) if counts else ""


def report(
    args: argparse.Namespace,
    tally: Tally,
    log: Path,
    root: Path,
    keepers: list[str],
    still_live: int,
    server_rc: int | None,
    started: float,
    finished: float,
    stop_began: float,
    back_up: float,
) -> int:
    answers = tally.answers
    by_status = Counter(a.status for a in answers)
    other_5xx = [a for a in answers if a.status >= 500 and a.status != 503]
    unavailable = [a for a in answers if a.status == 503]
    recovered = [
        a
        for a in answers
        if a.at > back_up and a.kind in NEEDS_DATABASE and a.status in (200, 401)
    ]
    recovery = recovered[0].at - back_up if recovered else float("nan")
    outside = [a for a in unavailable if not stop_began - 1 <= a.at <= back_up + 5]

    lines = read_log(log)
    claims: Counter[str] = Counter()
    claimers: set[int] = set()
    runs_by_pid: Counter[int] = Counter()
    purged = 0
    failed_purges = 0
    prefix = "purge claimed for the interval from "
    for _at, pid, _name, _level, message in lines:
        if message.startswith(prefix):
            claims[message[len(prefix) :].split(" by ")[0]] += 1
            claimers.add(pid)
        elif message.startswith("purge run of "):
            runs_by_pid[pid] += 1
        elif message.startswith("purged ") and message.endswith("sessions"):
            purged += int(message.split()[1])
        elif message.startswith("purge of timed-out sessions failed"):
            failed_purges += 1
    twice = {start: n for start, n in claims.items() if n > 1}
    # Intervals between the first and the last purge that nobody purged: only
    # those that overlap the restart are excused.
    starts = sorted(datetime.fromisoformat(s).timestamp() for s in claims)
    missed_in_outage = missed_elsewhere = 0
    if starts:
        count = round((starts[-1] - starts[0]) / args.interval) + 1
        for k in range(count):
            start = starts[0] + k * args.interval
            if any(abs(start - seen) < 0.01 for seen in starts):
                continue
            if start + args.interval >= stop_began and start <= back_up:
                missed_in_outage += 1
            else:
                missed_elsewhere += 1
    errors = (root / "gunicorn.err").read_text()
    tracebacks = errors.count("Traceback")

    duration = finished - started
    kinds = sorted(Counter(a.kind for a in answers).items())
    outage = (unavailable[-1].at - unavailable[0].at) if unavailable else 0.0
    figures = [
        f"load: {duration:.0f} s, {args.clients} clients, {args.workers} gunicorn "
        f"workers, purge every {args.interval:g} s, idle timeout {args.timeout:g} s",
        f"requests sent: {len(answers) + sum(tally.transport_errors.values())} "
        f"({len(answers) / duration:.0f}/s), transport errors: "
        f"{sum(tally.transport_errors.values())} {_brief(tally.transport_errors)}",
        "answers by status: "
        + ", ".join(f"{status}={count}" for status, count in sorted(by_status.items())),
        "answers by kind: " + ", ".join(f"{kind}={count}" for kind, count in kinds[:5]),
        "  " + ", ".join(f"{kind}={count}" for kind, count in kinds[5:]),
        f"5xx other than 503: {len(other_5xx)}",
        f"503 answers: {len(unavailable)}, outside the restart window: {len(outside)}",
        f"other unexpected answers: {sum(tally.unexpected.values())} "
        f"{_brief(tally.unexpected)}",
        f"live sessions that vanished: {len(tally.vanished)} "
        f"{_brief(Counter(tally.vanished))}",
        f"long-lived sessions alive at the end: {still_live}/{len(keepers)}",
        f"purges per interval: {max(claims.values()) if claims else 0} at most; "
        f"{len(claims)} intervals purged, {len(twice)} twice",
        f"  intervals without a purge: {missed_elsewhere}, and {missed_in_outage} "
        f"while MariaDB was down ({failed_purges} failed runs, logged)",
        f"purge job runs per worker: {sorted(runs_by_pid.values())}, claims won "
        f"by {len(claimers)} of them",
        f"sessions purged: {purged}",
        f"time to recover after the restart: {recovery:.2f} s after MariaDB "
        f"accepted connections",
        f"  503s seen by clients for {outage:.1f} s",
        f"gunicorn exit code {server_rc}, tracebacks in its log: {tracebacks}",
    ]
    print()
    print("\n".join(line.rstrip() for line in figures))

    ok = (
        not other_5xx
        and not tally.vanished
        and still_live == len(keepers)
        and not twice
        and claims
        and not missed_elsewhere
        and not outside
        and not tally.unexpected
        and recovered
        and tracebacks == 0
        and server_rc == 0
        and len(runs_by_pid) == args.workers
    )
    print("result: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

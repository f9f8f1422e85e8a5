"""Helpers for tests that run real processes: ports, servers, their log lines."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def served_env(tmp_path: Path, database: str, interval: float = 1.0) -> dict[str, str]:
    """Environment for ``served_app.py`` copied into ``tmp_path``."""
    shutil.copy(HERE / "served_app.py", tmp_path / "served_app.py")
    (tmp_path / "instance").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        KP_TEST_DB=database,
        KP_TEST_LOG=str(tmp_path / "kpsession.log"),
        KP_TEST_INSTANCE=str(tmp_path / "instance"),
        KP_TEST_INTERVAL=str(interval),
        PYTHONPATH=str(tmp_path),
        PYTHONUNBUFFERED="1",
    )
    env.pop("WERKZEUG_RUN_MAIN", None)
    env.pop("WERKZEUG_SERVER_FD", None)
    return env


def get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_http(port: int, path: str = "/pid", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = get(port, path)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer on port {port} within {timeout} s")
        time.sleep(0.1)


@dataclass(frozen=True)
class LogLine:
    created: float
    pid: int
    logger: str
    level: str
    message: str


def read_log(path: Path) -> list[LogLine]:
    """Parse the lines ``served_app`` writes (see its LOG_FORMAT)."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        parts = raw.split(" ", 4)
        if len(parts) == 5 and parts[1].isdigit():
            lines.append(LogLine(float(parts[0]), int(parts[1]), *parts[2:]))
    return lines


def claims(lines: list[LogLine]) -> list[tuple[str, int]]:
    """The intervals claimed for a purge, as (interval start, pid)."""
    prefix = "purge claimed for the interval from "
    found = []
    for line in lines:
        if line.message.startswith(prefix):
            start = line.message[len(prefix) :].split(" by ")[0]
            found.append((start, line.pid))
    return found


def fires(lines: list[LogLine]) -> list[LogLine]:
    """Every run of a purge job, in whichever process."""
    return [line for line in lines if line.message.startswith("purge run of ")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Process:
    """A process started by :func:`running`, its output going to two files."""

    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.stdout.read_text()

    def errors(self) -> str:
        return self.stderr.read_text()

    def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{text!r} not printed; stderr:\n{self.errors()[-3000:]}"
                )
            time.sleep(0.05)


@contextmanager
def running(
    args: list[str], env: dict[str, str], cwd: Path, name: str
) -> Iterator[Process]:
    """Run a process in a session of its own; end what is left of it afterwards."""
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        popen = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=True
        )
    process = Process(popen, out, err)
    try:
        yield process
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
        try:
            # Children the reloader or gunicorn left behind, if any.
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

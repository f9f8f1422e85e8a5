"""Running one benchmark variant under gunicorn on a loopback port."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    """A gunicorn master with its sync workers, serving one variant."""

    variant: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def worker_rss(self) -> list[int]:
        """Resident memory of each worker, in bytes."""
        return [worker.memory_info().rss for worker in self.workers()]

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    variant: str,
    port: int,
    db_url: str,
    secret_key: str,
    workers: int = 2,
    log_dir: Path | None = None,
) -> Server:
    """Start ``variant`` under gunicorn (sync workers) and wait until it answers."""
    log = (log_dir or Path("/tmp")) / f"kpbench-gunicorn-{variant}-{port}.log"
    env = dict(
        os.environ,
        KPBENCH_DB_URL=db_url,
        KPBENCH_SECRET_KEY=secret_key,
        PYTHONPATH=str(BENCH_DIR),
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--error-logfile",
        str(log),
        f"kpbench.apps:create({variant!r})",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = Server(variant, port, process, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.get("/api")
            if len(server.workers()) >= workers:
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"gunicorn for {variant} did not start; see {log}")
        time.sleep(0.2)

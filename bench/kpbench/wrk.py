"""Driving a server with Debian's ``wrk`` and a rotation of distinct sessions."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "tokens.lua"


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    return path


def run(
    port: int,
    headers: list[tuple[str, str]],
    seconds: float,
    connections: int,
    threads: int = 1,
) -> dict[str, Any]:
    """Run wrk against ``/api`` presenting ``headers`` in turn; return its figures."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as file:
        for name, value in headers:
            file.write(f"{name}: {value}\n")
        headers_file = file.name
    try:
        completed = subprocess.run(
            [
                require_wrk(),
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(SCRIPT),
                f"http://127.0.0.1:{port}/api",
                "--",
                headers_file,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        Path(headers_file).unlink(missing_ok=True)
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"no figures in wrk's output:\n{completed.stdout}")

"""A small open-loop load generator: requests at a fixed rate, latency from schedule.

wrk is closed-loop: when the server stalls, wrk waits and sends less, so a
stall hides in its percentiles. Here request ``i`` is due at ``start + i/rate``
whatever happened before, and its latency runs from that due time to the end
of the answer, so requests that queue behind a stall count in full.

Run as ``python -m kpbench.loadgen PORT HEADERS_FILE RATE SECONDS OUT.json``;
it stops on its own after ``SECONDS`` (plus the last answers, at most the
per-request timeout) or on SIGTERM, and writes one record per request.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

TIMEOUT = 30.0


async def one(
    port: int, header: str, due: float, records: list[tuple[float, float, int]]
) -> None:
    status = 0
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), TIMEOUT
        )
        writer.write(
            f"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        status = 0
    done = time.monotonic()
    # (due, wall clock) pairs let the harness window requests by wall time.
    records.append((due, done - due, status))


async def run(port: int, headers: list[str], rate: float, seconds: float) -> dict:
    records: list[tuple[float, float, int]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    start_mono = time.monotonic()
    start_wall = time.time()
    tasks = set()
    count = int(rate * seconds)
    for i in range(count):
        due = start_mono + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        if stop.is_set():
            break
        task = asyncio.create_task(one(port, headers[i % len(headers)], due, records))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=TIMEOUT + 5)
    return {
        "rate": rate,
        "start_wall": start_wall,
        "start_mono": start_mono,
        # Each record: due time (wall clock), latency from due time (s), status.
        "records": [
            (start_wall + (due - start_mono), latency, status)
            for due, latency, status in sorted(records)
        ],
    }


def main() -> None:
    port, headers_file, rate, seconds, out = sys.argv[1:6]
    headers = [line for line in Path(headers_file).read_text().splitlines() if line]
    result = asyncio.run(run(int(port), headers, float(rate), float(seconds)))
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()

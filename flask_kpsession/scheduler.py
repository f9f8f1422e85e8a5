"""The background purge: one APScheduler job per app, in the serving process.

The scheduler thread is started lazily and per process: threads do not survive
``fork()``, so a scheduler started in a pre-fork master (or in the reloader's
watcher) would run in no worker. The extension therefore starts the job from the
first request a process serves, and a process that finds a scheduler inherited
from its parent replaces it.

The job itself only starts a purge thread of its own and returns. Both that
thread and the scheduler's are daemon threads, so nothing here holds up the end
of the process: at exit the running purge is asked to stop after its current
batch (each batch is committed on its own), and waited for a few seconds at most.
A run that finds the previous purge of its app still going logs a WARNING and
skips: purges never overlap, and never vanish silently.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from .clock import utcnow

logger = logging.getLogger(__name__)

#: What the job calls: ``purge(app, keep_going)``, where ``keep_going()`` turns
#: false once the process is shutting down.
PurgeFunction = Callable[[Flask, Callable[[], bool]], None]

#: How long the process waits at exit for a running purge to stop.
SHUTDOWN_WAIT_SECONDS = 5.0

# Two locks, never held together: ``_lock`` around the scheduler and its jobs,
# ``_running_lock`` around the purge threads. The scheduler runs each job while
# holding its own job-store lock, so the job takes only ``_running_lock``.
_lock = threading.Lock()
_running_lock = threading.Lock()
_scheduler: BackgroundScheduler | None = None
_scheduler_pid: int | None = None
_job_ids: weakref.WeakKeyDictionary[Flask, str] = weakref.WeakKeyDictionary()
_numbers = itertools.count(1)
_stopping = threading.Event()


@dataclass
class _Running:
    thread: threading.Thread
    started: float


_running: dict[str, _Running] = {}


def _get_scheduler() -> BackgroundScheduler:
    global _scheduler, _scheduler_pid
    if _scheduler is None or _scheduler_pid != os.getpid():
        # The debug executor runs the job in the scheduler's own (daemon)
        # thread; the job only starts a purge thread, so that takes no time.
        _scheduler = BackgroundScheduler(
            daemon=True, timezone="UTC", executors={"default": DebugExecutor()}
        )
        _scheduler.start()
        _scheduler_pid = os.getpid()
    return _scheduler


def job_id(app: Flask) -> str:
    """The id of ``app``'s purge job in this process's scheduler.

    Numbered, not derived from ``id(app)``: a new app may reuse the address of
    one torn down whose job has not been removed yet.
    """
    with _lock:
        ident = _job_ids.get(app)
        if ident is None:
            ident = f"flask_kpsession.purge.{app.name}.{next(_numbers)}"
            _job_ids[app] = ident
        return ident


def keep_going() -> bool:
    """Tell a running purge whether to go on (false once the process exits)."""
    return not _stopping.is_set()


def start_job(
    app: Flask,
    interval: timedelta,
    purge: PurgeFunction,
    first_run: datetime | None = None,
) -> bool:
    """Schedule ``purge(app, keep_going)`` every ``interval``.

    Late runs are coalesced into one however late they are (a paused or busy
    process runs one purge on waking, not a burst).

    :return: ``False`` if the job was already scheduled in this process.
    """
    ident = job_id(app)
    app_ref = weakref.ref(app)

    def fire() -> None:
        target = app_ref()
        if target is None:
            _stop_job_soon(ident)
            return
        _start_purge(ident, target, purge)

    with _lock:
        scheduler = _get_scheduler()
        if scheduler.get_job(ident) is not None:
            return False
        scheduler.add_job(
            fire,
            "interval",
            id=ident,
            seconds=interval.total_seconds(),
            next_run_time=first_run or utcnow() + interval,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
    # The job goes with the app: a torn-down app leaves no job behind.
    weakref.finalize(app, _stop_job_soon, ident)
    return True


def _stop_job_soon(ident: str) -> None:
    """Remove the job ``ident`` from another thread.

    The calling thread may be the scheduler's own, in the middle of running that
    very job, which APScheduler does not allow to remove itself.
    """
    threading.Thread(
        target=stop_job_by_id, args=(ident,), name="flask-kpsession-unschedule"
    ).start()


def _start_purge(ident: str, app: Flask, purge: PurgeFunction) -> None:
    with _running_lock:
        if _stopping.is_set():
            return
        running = _running.get(ident)
        if running is not None and running.thread.is_alive():
            logger.warning(
                "purge run of %s skipped: the previous one, started %.0f s ago, "
                "is still going",
                app.name,
                time.monotonic() - running.started,
            )
            return
        thread = threading.Thread(
            target=_run_purge,
            args=(ident, app, purge),
            name=f"flask-kpsession-purge-{ident.rsplit('.', 1)[-1]}",
            daemon=True,
        )
        _running[ident] = _Running(thread, time.monotonic())
    logger.debug("purge run of %s starting", app.name)
    thread.start()


def _run_purge(ident: str, app: Flask, purge: PurgeFunction) -> None:
    try:
        purge(app, keep_going)
    finally:
        with _running_lock:
            running = _running.get(ident)
            if running is not None and running.thread is threading.current_thread():
                del _running[ident]


def stop_job_by_id(ident: str) -> bool:
    """Remove the job ``ident``; return whether one was scheduled.

    A purge already running finishes on its own.
    """
    with _lock:
        if _scheduler is None or _scheduler_pid != os.getpid():
            return False
        if _scheduler.get_job(ident) is None:
            return False
        _scheduler.remove_job(ident)
        return True


def is_scheduled(app: Flask) -> bool:
    """Tell whether ``app`` has a purge job in this process."""
    ident = job_id(app)
    with _lock:
        if _scheduler is None or _scheduler_pid != os.getpid():
            return False
        return _scheduler.get_job(ident) is not None


def is_purging(app: Flask) -> bool:
    """Tell whether a purge of ``app`` is running in this process right now."""
    ident = job_id(app)
    with _running_lock:
        running = _running.get(ident)
        return running is not None and running.thread.is_alive()


def shutdown(timeout: float = SHUTDOWN_WAIT_SECONDS) -> None:
    """Stop scheduling, ask running purges to stop, wait for them briefly.

    Registered with :mod:`atexit`; safe to call more than once.
    """
    _stopping.set()
    with _lock:
        scheduler = _scheduler if _scheduler_pid == os.getpid() else None
    with _running_lock:
        threads = [running.thread for running in _running.values()]
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=False)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    # The parent's threads did not come along: forget them, and start afresh.
    global _lock, _running_lock, _scheduler, _scheduler_pid
    _lock = threading.Lock()
    _running_lock = threading.Lock()
    _scheduler = None
    _scheduler_pid = None
    _running.clear()
    _stopping.clear()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)

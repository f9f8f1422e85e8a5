"""The background purge: one APScheduler job per app, in the serving process.

The scheduler thread is started lazily and per process: threads do not survive
``fork()``, so a scheduler started in a pre-fork master (or in the reloader's
watcher) would run in no worker. The extension therefore starts the job from the
first request a process serves, and a process that finds a scheduler inherited
from its parent replaces it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from .clock import utcnow

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_scheduler: BackgroundScheduler | None = None
_scheduler_pid: int | None = None


def _get_scheduler() -> BackgroundScheduler:
    global _scheduler, _scheduler_pid
    if _scheduler is None or _scheduler_pid != os.getpid():
        _scheduler = BackgroundScheduler(daemon=True, timezone="UTC")
        _scheduler.start()
        _scheduler_pid = os.getpid()
    return _scheduler


def job_id(app: Flask) -> str:
    """The id of ``app``'s purge job in this process's scheduler."""
    return f"flask_kpsession.purge.{app.name}.{id(app):x}"


def start_job(
    app: Flask,
    interval: timedelta,
    purge: Callable[[Flask], None],
    first_run: datetime | None = None,
) -> bool:
    """Schedule ``purge(app)`` every ``interval``; return False if already scheduled.

    Late runs are coalesced into one, and a run may start up to a whole interval
    late (a paused or busy process) instead of being dropped.
    """
    app_ref = weakref.ref(app)
    ident = job_id(app)

    def run() -> None:
        target = app_ref()
        if target is None:
            stop_job_by_id(ident)
            return
        purge(target)

    with _lock:
        scheduler = _get_scheduler()
        if scheduler.get_job(ident) is not None:
            return False
        scheduler.add_job(
            run,
            "interval",
            id=ident,
            seconds=interval.total_seconds(),
            next_run_time=first_run or utcnow() + interval,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(interval.total_seconds())),
        )
    return True


def stop_job_by_id(ident: str) -> bool:
    """Remove the job ``ident``; return whether one was scheduled."""
    with _lock:
        if _scheduler is None or _scheduler_pid != os.getpid():
            return False
        if _scheduler.get_job(ident) is None:
            return False
        _scheduler.remove_job(ident)
        return True


def is_scheduled(app: Flask) -> bool:
    """Tell whether ``app`` has a purge job in this process."""
    with _lock:
        if _scheduler is None or _scheduler_pid != os.getpid():
            return False
        return _scheduler.get_job(job_id(app)) is not None

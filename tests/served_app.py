"""An app for the tests that run real server processes, configured by environment.

``KP_TEST_DB`` is the database URL, ``KP_TEST_LOG`` a file that every process
appends its ``flask_kpsession`` log lines to (DEBUG and up, with time and pid),
``KP_TEST_INTERVAL`` the purge interval in seconds; ``KP_TEST_CONFIG`` may hold
more configuration as JSON. Served by ``flask run`` (``create_app``), gunicorn
(``served_app:create_app()``) or a plain script (``python served_app.py``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import timedelta

from flask import Flask, jsonify

from flask_kpsession import KPSession, current_session, login_required

LOG_FORMAT = "%(created).6f %(process)d %(name)s %(levelname)s %(message)s"


def _log_to_file() -> None:
    handler = logging.FileHandler(os.environ["KP_TEST_LOG"])
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("flask_kpsession")
    if not any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def create_app() -> Flask:
    _log_to_file()
    app = Flask("served_app", instance_path=os.environ["KP_TEST_INSTANCE"])
    app.config.update(
        SECRET_KEY="served app secret key, long enough to be real",
        SQLALCHEMY_DATABASE_URI=os.environ["KP_TEST_DB"],
        KPSESSION_CLEANUP_INTERVAL=timedelta(
            seconds=float(os.environ.get("KP_TEST_INTERVAL", "1"))
        ),
        KPSESSION_PASSWORD_TIME_COST=2,
        KPSESSION_PASSWORD_MEMORY_COST=19 * 1024,
        KPSESSION_PASSWORD_PARALLELISM=1,
    )
    extra = json.loads(os.environ.get("KP_TEST_CONFIG", "{}"))
    for key, value in extra.items():
        if key.endswith(("TIMEOUT", "THROTTLE")) and isinstance(value, float):
            value = timedelta(seconds=value)
        app.config[key] = value
    KPSession(app)

    @app.get("/pid")
    def pid():
        return jsonify(pid=os.getpid())

    @app.get("/private")
    @login_required
    def private():
        return jsonify(user=current_session.uname)

    @app.get("/boom")
    def boom():
        raise RuntimeError("a view that fails")

    return app


if __name__ == "__main__":
    # A process that serves no HTTP: the job started as a request would start
    # it, then the purge runs until the process is told to stop.
    served = create_app()
    served.test_client().get("/pid")
    print("ready", flush=True)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)

"""The app the soak script serves with gunicorn, configured by environment.

``SOAK_DB`` is the database URL, ``SOAK_LOG`` a file every worker appends its
``flask_kpsession`` log lines to (with time and pid), ``SOAK_INTERVAL`` the
purge interval and ``SOAK_TIMEOUT`` the idle timeout, both in seconds.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from flask import Flask, Response, jsonify

from flask_kpsession import KPSession, current_session, login_required

LOG_FORMAT = "%(created).6f %(process)d %(name)s %(levelname)s %(message)s"


def create_app() -> Flask:
    handler = logging.FileHandler(os.environ["SOAK_LOG"])
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("flask_kpsession")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    app = Flask("soak_app", instance_path=os.environ["SOAK_INSTANCE"])
    idle = timedelta(seconds=float(os.environ.get("SOAK_TIMEOUT", "20")))
    app.config.update(
        SECRET_KEY="soak test secret key, long enough to be a real one",
        SQLALCHEMY_DATABASE_URI=os.environ["SOAK_DB"],
        KPSESSION_TIMEOUT=idle,
        KPSESSION_REFRESH_THROTTLE=idle / 10,
        KPSESSION_CLEANUP_INTERVAL=timedelta(
            seconds=float(os.environ.get("SOAK_INTERVAL", "3"))
        ),
        KPSESSION_CLEANUP_VERBOSE=True,
        # The cheapest argon2id that meets OWASP's floor, and limits that the
        # load's deliberate wrong passwords, all from 127.0.0.1, stay under.
        KPSESSION_PASSWORD_TIME_COST=2,
        KPSESSION_PASSWORD_MEMORY_COST=19 * 1024,
        KPSESSION_PASSWORD_PARALLELISM=1,
        KPSESSION_LOGIN_PAIR_LIMIT=1_000_000,
        KPSESSION_LOGIN_ADDRESS_LIMIT=1_000_000,
        KPSESSION_LOGIN_USER_LIMIT=1_000_000,
    )
    KPSession(app)

    @app.get("/private")
    @login_required
    def private() -> Response:
        return jsonify(user=current_session.uname)

    return app

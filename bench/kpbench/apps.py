"""The WSGI apps the benchmarks serve under gunicorn, one per variant.

Every variant answers ``GET /api`` with the same small JSON body naming the
user, so they differ only in how the request is authenticated:

- ``bare``: no authentication at all (the ceiling);
- ``bare_select``: one raw indexed SELECT of the presented token's hash in
  ``kp_sessions`` through a pooled SQLAlchemy connection (the floor for any
  database-checked session);
- ``flask_login``: Flask-Login with Flask's signed-cookie session;
- ``flask_session``: Flask-Session's SQLAlchemy backend on the same MariaDB;
- ``kpsession``: flask-kpsession with its defaults;
- ``kpsession_cache``: the same with ``KPSESSION_VALIDATION_CACHE`` at 1 s;
- ``kpsession_refresh``: flask-kpsession refreshing on every request
  (``KPSESSION_REFRESH_THROTTLE = 0``), the load of the purge benchmark.

The database URL and secret key come from ``KPBENCH_DB_URL`` and
``KPBENCH_SECRET_KEY``; gunicorn builds an app with ``kpbench.apps:create(NAME)``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from flask import Flask, abort, jsonify, request

VARIANTS = (
    "bare",
    "bare_select",
    "flask_login",
    "flask_session",
    "kpsession",
    "kpsession_cache",
)
BENCH_USERS = 16


def _base(name: str) -> Flask:
    app = Flask(f"kpbench_{name}")
    app.config["SECRET_KEY"] = os.environ.get(
        "KPBENCH_SECRET_KEY", "kpbench secret key, long enough to be real"
    )
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("KPBENCH_DB_URL", "")
    return app


def _bare(app: Flask) -> None:
    @app.get("/api")
    def api() -> Any:
        return jsonify(user="kpbench0")


def _bare_select(app: Flask) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], pool_recycle=3600)
    query = text("SELECT uname FROM kp_sessions WHERE token_hash = :digest")
    from flask_kpsession.tokens import TokenHasher

    hasher = TokenHasher([app.config["SECRET_KEY"]])

    @app.get("/api")
    def api() -> Any:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        with engine.connect() as conn:
            uname = conn.execute(query, {"digest": hasher.digest(token)}).scalar()
        if uname is None:
            abort(401)
        return jsonify(user=uname)


def _flask_login(app: Flask) -> None:
    from flask_login import LoginManager, UserMixin, current_user, login_user
    from flask_login import login_required as flask_login_required

    class User(UserMixin):
        def __init__(self, ident: str) -> None:
            self.id = ident

    users = {f"kpbench{n}": User(f"kpbench{n}") for n in range(BENCH_USERS)}
    manager = LoginManager(app)
    manager.user_loader(users.get)

    @app.get("/login/<int:n>")
    def login(n: int) -> Any:
        login_user(users[f"kpbench{n}"])
        return jsonify(user=f"kpbench{n}")

    @app.get("/api")
    @flask_login_required
    def api() -> Any:
        return jsonify(user=current_user.id)


def _flask_session(app: Flask) -> None:
    from flask import session
    from flask_session import Session
    from flask_sqlalchemy import SQLAlchemy

    db = SQLAlchemy(app)
    app.config.update(
        SESSION_TYPE="sqlalchemy",
        SESSION_SQLALCHEMY=db,
        SESSION_PERMANENT=True,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=2),
    )
    Session(app)
    app.extensions["kpbench_db"] = db

    @app.get("/login/<int:n>")
    def login(n: int) -> Any:
        session["uid"] = f"kpbench{n}"
        return jsonify(user=session["uid"])

    @app.get("/api")
    def api() -> Any:
        uid = session.get("uid")
        if uid is None:
            abort(401)
        return jsonify(user=uid)


def _kpsession(app: Flask, **config: Any) -> None:
    from flask_kpsession import KPSession, current_session, login_required

    app.config.update(config)
    KPSession(app)

    @app.get("/api")
    @login_required
    def api() -> Any:
        return jsonify(user=current_session.uname)


def create(name: str) -> Flask:
    """Build the app of variant ``name``."""
    app = _base(name)
    if name == "bare":
        _bare(app)
    elif name == "bare_select":
        _bare_select(app)
    elif name == "flask_login":
        _flask_login(app)
    elif name == "flask_session":
        _flask_session(app)
    elif name == "kpsession":
        _kpsession(app)
    elif name == "kpsession_cache":
        _kpsession(app, KPSESSION_VALIDATION_CACHE=timedelta(seconds=1))
    elif name == "kpsession_refresh":
        # The purge benchmark runs the purge itself: no job in the workers.
        _kpsession(
            app,
            KPSESSION_REFRESH_THROTTLE=timedelta(0),
            KPSESSION_CLEANUP_ENABLED=False,
        )
    else:
        raise ValueError(f"unknown variant {name!r}")
    return app

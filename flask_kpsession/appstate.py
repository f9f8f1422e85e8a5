"""What the extension keeps for each app, and how it is wired at ``init_app``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from . import signals
from .config import Settings
from .csrf import CsrfGuard
from .database import Database
from .inventory import SessionInventory
from .models import define_tables
from .purge import Purger
from .store import SessionStore
from .throttle import LoginThrottle
from .tokens import TokenHasher, secret_keys
from .users import UserStore

logger = logging.getLogger(__name__)


@dataclass
class AppState:
    """Everything the extension keeps for one app.

    Held in a weak mapping keyed by the app, so that an app that goes away
    takes its state (and its engine handle) with it.
    """

    settings: Settings
    db: SQLAlchemy
    database: Database
    sessions: SessionStore
    users: UserStore
    inventory: SessionInventory
    purger: Purger
    throttle: LoginThrottle
    csrf: CsrfGuard
    loop_pid: int | None = None


def build_state(
    app: Flask, db: SQLAlchemy, settings: Settings, *, owns_db: bool
) -> AppState:
    """Wire the stores of ``app`` on the engine and metadata of ``db``.

    :param owns_db: the extension created ``db`` itself, so it may tune the
        engine (SQLite's WAL mode) without surprising the host app.
    """
    with app.app_context():
        engine = db.engine
    database = Database(engine, define_tables(db.metadata), owns_engine=owns_db)
    keys = secret_keys(app.config)
    hasher = TokenHasher(keys)
    state = AppState(
        settings=settings,
        db=db,
        database=database,
        sessions=SessionStore(database, settings, hasher),
        users=UserStore(database, settings),
        inventory=SessionInventory(database, hasher),
        purger=Purger(database, settings.cleanup_batch_size),
        throttle=LoginThrottle(
            database, settings.throttle, keys, settings.cleanup_batch_size
        ),
        csrf=CsrfGuard(settings.csrf, settings.cookie_name, keys),
    )

    sessions = state.sessions
    if sessions.cache is not None:
        # Removals made in this process reach the validation cache at once.
        signals.session_removed.connect(sessions.forget_removed, sender=app)
        signals.purge_finished.connect(sessions.forget_all, sender=app)

    if not hasher.keyed:
        logger.warning(
            "SECRET_KEY is not set: session tokens are stored as plain SHA-256 "
            "hashes; set SECRET_KEY so that they are keyed (HMAC-SHA256)."
        )
    if not settings.cookie_secure and not (app.debug or app.testing):
        logger.warning(
            "KPSESSION_COOKIE_SECURE is False: the session cookie is marked "
            "Secure only on requests that arrive over HTTPS; set it to True "
            "in production."
        )
    return state

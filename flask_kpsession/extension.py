"""The Flask extension object, :class:`KPSession`, and its public operations."""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from datetime import timedelta

from flask import Flask, Response, current_app, request
from flask_sqlalchemy import SQLAlchemy

from . import login, scheduler
from .appstate import AppState, build_state
from .cleanup import purge_now, run_scheduled
from .cli import kpsession_cli
from .config import DEFAULTS, Settings, load_settings
from .errors import DatabaseUnavailableError, UnknownUserError
from .hook import RequestState, current_session, request_state
from .inventory import SessionStats
from .record import UserSession
from .responses import private, unavailable
from .unrouted import routing_answer
from .views import blueprint

logger = logging.getLogger(__name__)


def _default_database_uri(app: Flask) -> str:
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "kpsession.sqlite3")
    return f"sqlite:///{path}"


def _database_unavailable(error: DatabaseUnavailableError) -> Response:
    """Answer 503 JSON when a host view's session call meets an outage."""
    logger.warning("session database unavailable: %s", error)
    return unavailable()


class KPSession:
    """Server-side login sessions kept in a SQL database.

    :param app: the app to register with now, or ``None`` for ``init_app`` later.
    :param db: the app's own ``SQLAlchemy`` instance. Without it the extension
        uses the one registered on the app, else brings its own.
    """

    def __init__(self, app: Flask | None = None, db: SQLAlchemy | None = None) -> None:
        self._db = db
        self._states: weakref.WeakKeyDictionary[Flask, AppState] = (
            weakref.WeakKeyDictionary()
        )
        self._verify_password: login.PasswordCheck | None = None
        if app is not None:
            self.init_app(app)

    # -- registration ------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``: config, tables, routes, hook and CLI.

        :raises RuntimeError: the extension is already registered on ``app``.
        :raises ConfigurationError: a ``KPSESSION_*`` value is not accepted.
        """
        if "kpsession" in app.extensions:
            raise RuntimeError(
                "flask-kpsession is already registered on this app; call init_app "
                "once per app (a KPSession(app) constructor call registers it too)."
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        settings = load_settings(app.config)

        db, owns_db = self._resolve_db(app)
        state = build_state(app, db, settings, owns_db=owns_db)
        self._states[app] = state
        app.extensions["kpsession"] = self

        if settings.routes_enabled:
            app.register_blueprint(blueprint, url_prefix=settings.url_prefix or None)
        app.before_request(self._before_request)
        app.register_error_handler(DatabaseUnavailableError, _database_unavailable)
        app.after_request(self._after_request)
        app.context_processor(lambda: {"current_session": current_session})
        app.cli.add_command(kpsession_cli)
        state.database.prepare()

    def _resolve_db(self, app: Flask) -> tuple[SQLAlchemy, bool]:
        registered: SQLAlchemy | None = app.extensions.get("sqlalchemy")
        if self._db is not None and registered is self._db:
            return self._db, False
        if self._db is None and registered is not None:
            return registered, False

        if not app.config.get("SQLALCHEMY_DATABASE_URI") and not app.config.get(
            "SQLALCHEMY_BINDS"
        ):
            app.config["SQLALCHEMY_DATABASE_URI"] = _default_database_uri(app)
        if self._db is not None:
            self._db.init_app(app)
            return self._db, False
        db = SQLAlchemy()
        db.init_app(app)
        return db, True

    def _state(self, app: Flask | None = None) -> AppState:
        target = app or current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return self._states[target]
        except KeyError:
            raise RuntimeError(
                "flask-kpsession is not registered on this app; call init_app(app)."
            ) from None

    def settings(self, app: Flask | None = None) -> Settings:
        """Return the validated settings of ``app`` (default: the current app)."""
        return self._state(app).settings

    def db(self, app: Flask | None = None) -> SQLAlchemy:
        """Return the ``SQLAlchemy`` instance whose metadata holds the tables."""
        return self._state(app).db

    def verify_password(self, check: login.PasswordCheck) -> login.PasswordCheck:
        """Register ``check(username, password)`` as the credentials check.

        Use as a decorator. It returns a true value when the pair matches; from
        then on the built-in users table is not consulted.
        """
        self._verify_password = check
        return check

    # -- request path ------------------------------------------------------------

    def _before_request(self) -> Response | None:
        state = self._state()
        if state.loop_pid != os.getpid():
            state.loop_pid = os.getpid()
            if state.settings.cleanup_enabled:
                self.start_timeout_loop(verbose=state.settings.cleanup_verbose)
        if request.routing_exception is not None:
            # No view will run: answer our own paths in JSON, leave the rest
            # (and the session, resolved lazily if wanted) to the host app.
            if not state.settings.routes_enabled:
                return None
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            return routing_answer(app, request, state.settings.url_prefix)
        if state.settings.hook_enabled and request.endpoint != "static":
            request_state()
        return None

    def _after_request(self, response: Response) -> Response:
        # Whoever set or cleared the session cookie, the answer must not be
        # cached: a shared cache would hand one user's token to the next.
        name = self._state().settings.cookie_name + "="
        if any(
            value.startswith(name) for value in response.headers.getlist("Set-Cookie")
        ):
            private(response)
        return response

    def resolve_request(self) -> RequestState:
        """Validate the current request's token; refresh a live session's clock.

        Called once per request, by the hook or on first use of the session.
        """
        return login.resolve_request(self._state())

    def log_in(self, username: str, password: str) -> UserSession:
        """Check the credentials and start a fresh session for this request.

        The code behind ``POST /login``; host apps call it for their own login
        forms. Any session the request presented is ended first: a login always
        issues a new token and never adopts one the client chose.

        :raises InvalidCredentialsError: the same for unknown user and bad password.
        :raises InvalidAddressError: the request carries no usable client address.
        :raises LoginThrottledError: too many failures; the attempt was not checked.
        """
        return login.log_in(self._state(), self._verify_password, username, password)

    def log_out(self) -> bool:
        """End the session this request presents; return whether one was deleted.

        A cookie-authenticated request that looks forged ends nothing.
        """
        return login.log_out(self._state())

    def set_cookie(self, response: Response, session: UserSession) -> None:
        """Put the token of ``session`` in the session cookie of ``response``."""
        login.set_cookie(self._state(), response, session)

    def clear_cookie(self, response: Response) -> None:
        """Expire the session cookie in the browser."""
        login.clear_cookie(self._state(), response)

    def create_user(self, username: str, password: str) -> None:
        """Add a user to the built-in users table.

        :raises ValueError: the username or password is not acceptable, or taken.
        """
        self._state().users.create(username, password)

    def set_password(self, username: str, password: str) -> bool:
        """Replace a built-in user's password; return whether the user exists."""
        return self._state().users.set_password(username, password)

    def change_password(
        self, uname: str, new_password: str, keep_token: str | None = None
    ) -> int:
        """Set a built-in user's password and end every other session of theirs.

        :param keep_token: the token of the session to keep (the one asking).
        :return: the number of sessions revoked.
        :raises UnknownUserError: no built-in user has that name.
        :raises ValueError: the password is not acceptable.
        """
        state = self._state()
        if not state.users.set_password(uname, new_password):
            raise UnknownUserError(f"no user {uname!r}")
        return state.inventory.revoke_user(
            uname, keep_token=keep_token, reason="password_change"
        )

    # -- a user's sessions -------------------------------------------------------

    def list_sessions(self, uname: str | None) -> list[UserSession]:
        """Return the live sessions of ``uname``, most recently used first.

        ``None`` lists every user's sessions. Each has ``id``, ``addr``,
        ``user_agent`` and its timestamps; none carries a token.
        """
        state = self._state()
        return state.inventory.of_user(uname, state.sessions.boundary())

    def revoke_session(self, session_id: str) -> bool:
        """Delete the session with public id ``session_id``; tell whether one was."""
        return self._state().inventory.revoke(session_id)

    def revoke_own_session(self, uname: str, session_id: str) -> bool:
        """Delete the session ``session_id`` only if it belongs to ``uname``."""
        return self._state().inventory.revoke(session_id, uname=uname)

    def revoke_user_sessions(self, uname: str, keep_token: str | None = None) -> int:
        """Delete every session of ``uname`` but the one of ``keep_token``.

        :return: the number of sessions deleted.
        """
        return self._state().inventory.revoke_user(uname, keep_token=keep_token)

    def session_stats(self) -> SessionStats:
        """Count stored and live sessions and users with a live session."""
        state = self._state()
        return state.inventory.stats(state.sessions.boundary())

    # -- the session operations --------------------------------------------------

    def get_session(self, addr: str, token: str) -> UserSession:
        """Return the live session of ``token`` for ``addr``.

        A timed-out session is deleted on the way.

        :raises NoSessionFoundError: absent, bound to another address, or timed out.
        """
        return self._state().sessions.get(addr, token)

    def remove_session(self, addr: str, token: str) -> bool:
        """Delete the session of ``token`` unless it is bound to another address.

        :return: whether a session was deleted.
        """
        return self._state().sessions.remove(addr, token)

    def add_session(self, sess: UserSession) -> None:
        """Store ``sess`` (its token chosen by the caller), filling in its fields.

        :raises DuplicateSessionError: a session with that token is already stored.
        :raises ValueError: the token, address or username is malformed.
        """
        self._state().sessions.add(sess)

    def generate_session(self, addr: str, uname: str) -> UserSession:
        """Store and return a new session for ``uname`` with a fresh random token."""
        return self._state().sessions.generate(addr, uname)

    def use_session(self, addr: str, token: str) -> bool:
        """Refresh the idle clock of a live session; return whether one was."""
        return self._state().sessions.use(addr, token)

    def session_exists(self, addr: str, token: str) -> bool:
        """Tell whether ``token`` names a live session for ``addr``; changes nothing."""
        return self._state().sessions.exists(addr, token)

    def delete_timed_out_sessions(self, timeout: int | timedelta | None = None) -> int:
        """Delete sessions idle for at least ``timeout`` or past their lifetime.

        :param timeout: minutes or a timedelta; ``None`` for the configured idle
            timeout; ``0`` deletes every session.
        :return: the number of sessions deleted.
        """
        state = self._state()
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, timedelta)):
                raise TypeError("timeout must be minutes (int) or a timedelta")
            timeout = (
                timeout
                if isinstance(timeout, timedelta)
                else timedelta(minutes=timeout)
            )
            if timeout < timedelta(0):
                raise ValueError("timeout must not be negative")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        return purge_now(state, app, timeout)

    def start_timeout_loop(self, verbose: bool = True) -> None:
        """Start (once) the background job that purges every cleanup interval.

        Any number of processes and hosts may run it: each interval, the one
        that claims it in the database purges, and the others skip.
        """
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        interval = self._state(app).settings.cleanup_interval
        started = scheduler.start_job(
            app,
            interval,
            lambda target, keep_going: self._scheduled_purge(
                target, verbose, keep_going
            ),
        )
        if started:
            logger.info("purge job started: every %s", interval)

    def stop_timeout_loop(self) -> None:
        """Stop the purge job of the current app; do nothing when none runs."""
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        if scheduler.stop_job_by_id(scheduler.job_id(app)):
            logger.info("purge job stopped")

    def _scheduled_purge(
        self, app: Flask, verbose: bool, keep_going: Callable[[], bool]
    ) -> None:
        run_scheduled(self._state(app), app, verbose, keep_going)
